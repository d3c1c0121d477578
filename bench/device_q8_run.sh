#!/usr/bin/env bash
# One GPU call for the int8-activation GEMV (matmul_gemv_q8.cu): build a given source tree, the
# matmul/engine GPU tests, the kernel microbench and whole-model decode with the switches
# FATHOM_GEMV_Q8 (new kernel on/off) and FATHOM_PDL (programmatic dependent launch on/off).
# Usage (device tool, carry [".devdeps", ".devsrc"]): bash bench/device_q8_run.sh [src.tgz]
# The tarball (git archive of the commit under test) isolates the run from uncommitted edits.
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
stamp "gpu tests"
timeout 240 build-dev/tests/fathom_gpu_tests >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure|worst|rel " "$OUT/gpu_tests.log" | head -40
stamp microbench
for q8 in 1 0; do
  FATHOM_GEMV_Q8=$q8 timeout 120 build-dev/tests/fathom_gpu_tests --gtest_also_run_disabled_tests \
    --gtest_filter='*BenchKernels*' >"$OUT/kbench_q8_$q8.log" 2>&1
  echo "== FATHOM_GEMV_Q8=$q8"; grep -E "^\[bench\]" "$OUT/kbench_q8_$q8.log" | head -60
done
for cfg in "q8pdl:1:1" "q8nopdl:1:0" "v3:0:1"; do
  name=${cfg%%:*}; rest=${cfg#*:}; q8=${rest%%:*}; pdl=${rest#*:}
  stamp "decode $name"
  FATHOM_GEMV_Q8=$q8 FATHOM_PDL=$pdl timeout 150 $B bench --synthetic gemma3-270m,llama3.2-1b,llama3-8b \
    --type Q4_K_M,Q8_0 -p 512 -n 128 -r 3 -q --json "$OUT/dec_$name.json" >"$OUT/dec_$name.md" 2>&1
  grep -E "tg128" "$OUT/dec_$name.md" | awk -F'|' -v n=$name '{print n, $2, $3, $4, $5, $6, $7, $8}'
done
stamp prefill
for cfg in "tuned::" "oldthresh:4194304:" "notune::0"; do
  name=${cfg%%:*}; rest=${cfg#*:}; th=${rest%%:*}; tu=${rest#*:}
  env ${th:+FATHOM_DEQUANT_MIN_ELEMENTS=$th} ${tu:+FATHOM_GEMM_TUNE=$tu} timeout 150 $B bench \
    --synthetic gemma3-270m,llama3.2-1b,qwen2.5-7b,llama3-8b --type Q4_K_M -p 512 -n 1 -r 2 -q >"$OUT/pp_$name.md" 2>&1
  grep -E "pp512" "$OUT/pp_$name.md" | awk -F'|' -v n=$name '{print n, $2, $4, $5, $7, $9}'
done
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M,F16 -p 4096 -n 1 -r 2 -q >"$OUT/pp4096.md" 2>&1
grep -E "pp4096" "$OUT/pp4096.md" | awk -F'|' '{print $2, $4, $5, $7, $9, $10}'
stamp "batch 8"
timeout 100 $B bench --synthetic llama3-8b --type Q4_K_M -p 512 -n 64 -b 1,2,4,8 -r 2 -q >"$OUT/batch.md" 2>&1
grep -E "tg|pp" "$OUT/batch.md" | head -12
stamp done

#!/usr/bin/env bash
# One GPU call for the tensor-core prefill attention (src/cuda/attention_prefill.cu): build the
# source tarball, the prefill attention tests (gate), the other attention tests, the prefill
# kernel bench (GpuAttention.DISABLED_BenchPrefill: 4k / 8k / 16k causal, D 128, 32/8 heads, every
# variant), then the whole model at pp512 / pp4096 and the engine tests (only when the prefill
# tests pass), memcheck last. The model bench runs with FATHOM_ATTN_DECODE=old so that only the
# prefill kernel differs from the baseline runs.
# Usage (device tool, carry [".devdeps", ".devsrc-fa"]): bash bench/device_fa.sh .devsrc-fa/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
pat='^\[  (PASSED|FAILED|SKIPPED) |^\[       OK|^\[  FAILED|Failure|worst element|attention\(n_head'
stamp "prefill tests"
timeout 100 $T --gtest_filter='GpuAttention.Prefill*:GpuAttention.Rejects*' >"$OUT/prefill_tests.log" 2>&1
rc_pre=$?
echo "prefill tests rc=$rc_pre"; grep -E "$pat" "$OUT/prefill_tests.log" | head -40
stamp bench
timeout 60 $T --gtest_also_run_disabled_tests --gtest_filter='GpuAttention.DISABLED_BenchPrefill' >"$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^bench|Failure|Expected" "$OUT/bench.log" | head -30
if [ "$rc_pre" = 0 ]; then
  stamp model
  FATHOM_ATTN_DECODE=old timeout 150 $B bench --synthetic llama3-8b --type F16,Q4_K_M -p 512,4096 -n 1 -r 2 -q >"$OUT/model.md" 2>&1
  echo "model rc=$?"; grep -E "pp|rror" "$OUT/model.md" | head -8
  stamp "engine tests"
  FATHOM_ATTN_DECODE=old timeout 90 $T --gtest_filter='*Engine*:*Pdl*' >"$OUT/engine_tests.log" 2>&1
  echo "engine tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|relative error" "$OUT/engine_tests.log" | head -12
fi
stamp "decode tests (other helper's kernel)"
timeout 40 $T --gtest_filter='GpuAttention.Decode*' >"$OUT/decode_tests.log" 2>&1
echo "decode tests rc=$?"; grep -E "^\[  (PASSED|FAILED) " "$OUT/decode_tests.log" | head -8
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck $T --gtest_filter='GpuAttention.PrefillTensorCore*' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -6
stamp done

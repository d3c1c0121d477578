#!/usr/bin/env bash
# One GPU call: build the source tarball, every GPU test, decode A/B of the F16/BF16 GEMV
# (FATHOM_GEMV_HALF) and of the RMS norm fused into the grouped GEMVs (FATHOM_FUSE_NORM), and
# memcheck over the GEMV tests. Usage (carry [".devdeps", ".devsrc"]):
#   bash bench/device_f16_run.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
stamp tests
timeout 120 $T >"$OUT/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure" "$OUT/gpu_tests.log" | head
stamp decode
for cfg in "default::" "nohalf:0:" "nofuse::0"; do
  name=${cfg%%:*}; rest=${cfg#*:}; h=${rest%%:*}; f=${rest#*:}
  env ${h:+FATHOM_GEMV_HALF=$h} ${f:+FATHOM_FUSE_NORM=$f} timeout 60 $B bench --synthetic llama3.2-1b,llama3-8b --type F16,Q4_K_M \
    -p 16 -n 64 -r 2 -q >"$OUT/dec_$name.md" 2>&1
  grep -E "tg64" "$OUT/dec_$name.md" | awk -F'|' -v n=$name '{print n, $2, $4, $7, $8, $9}'
done
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck $T --gtest_filter='GpuMatmul.Gemv*:GpuGemvQ8.FusedRmsNorm:GpuGemvQ8.EveryTypeAndBatch:Tiny/EngineVsReference*' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -6
stamp done

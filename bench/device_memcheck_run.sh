#!/usr/bin/env bash
# One GPU call: build the source tarball, the GEMV/attention/engine GPU tests, then
# compute-sanitizer memcheck over them. Usage (carry [".devdeps", ".devsrc"]):
#   bash bench/device_memcheck_run.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
F='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.TwoByteAlignedRows:GpuGemvQ8.GroupedQkv:GpuGemvQ8.FusedGateUpActivation:GpuGemvQ8.LongRowsAndPartialStages:GpuMatmul.Gemv*:Tiny/EngineVsReference*:*Pdl*:GpuAttention.*'
stamp tests
timeout 120 $T >"$OUT/gpu_tests.log" 2>&1; echo "all gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/gpu_tests.log" | head
stamp memcheck
timeout 150 compute-sanitizer --tool memcheck $T --gtest_filter="$F" >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -8
stamp done

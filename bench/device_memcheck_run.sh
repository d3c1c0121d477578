#!/usr/bin/env bash
# One GPU call: build the source tarball, the GEMV/attention/engine GPU tests, then
# compute-sanitizer memcheck over them. Usage (carry [".devdeps", ".devsrc"]):
#   bash bench/device_memcheck_run.sh [src.tgz]
set -u
FINAL=${OUT:-/tmp/fathom-out}
export OUT=/tmp/fathom-run
mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/results.tgz" -C "$OUT" .' EXIT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
src=${1:-.devsrc/head.tgz}
W=/tmp/fathom-src
rm -rf "$W" && mkdir -p "$W" && tar xzf "$src" -C "$W" && cp -r .devdeps "$W"/ && cd "$W" || exit 1
stamp build
scripts/device_build.sh build-dev >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
T=build-dev/tests/fathom_gpu_tests
F='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.TwoByteAlignedRows:GpuGemvQ8.GroupedQkv:GpuGemvQ8.FusedGateUpActivation:GpuGemvQ8.LongRowsAndPartialStages:GpuMatmul.Gemv*:Tiny/EngineVsReference*:*Pdl*:GpuAttention.*'
stamp tests
timeout 120 $T >"$OUT/gpu_tests.log" 2>&1; echo "all gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/gpu_tests.log" | head
stamp memcheck
timeout 150 compute-sanitizer --tool memcheck $T --gtest_filter="$F" >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -8
stamp done

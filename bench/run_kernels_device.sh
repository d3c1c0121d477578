#!/usr/bin/env bash
# One device-machine call for the CUDA kernels: build the GPU op tests, run them, time the
# kernels, then compute-sanitizer memcheck / racecheck on subsets (each bounded by a timeout).
# Usage (device tool, carry [".devdeps"]): bash bench/run_kernels_device.sh
# Logs land in $OUT (tests.log, bench.log, memcheck.log, racecheck.log, build.log).
set -uo pipefail
OUT=${OUT:-/tmp/fathom_kernels_out}
mkdir -p "$OUT"
dir=build-dev
T=build-dev/tests/fathom_gpu_tests
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.used,memory.total \
  --format=csv >"$OUT/nvsmi.txt" 2>&1
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_CUDA_ARCHS=90a \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CXX_FLAGS="-include cstdint" >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
start=$(date +%s)
ninja -C "$dir" -j"$(nproc)" fathom_gpu_tests >>"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
timeout 120 "$T" --gtest_filter='Gpu*' >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[==========\]|FAILED  \]|Failure|worst element" "$OUT/tests.log" | head -60
timeout 100 "$T" --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Bench*' >"$OUT/bench.log" 2>&1
echo "bench rc=$?"
timeout 75 compute-sanitizer --tool memcheck --print-limit 20 "$T" \
  --gtest_filter='GpuAttention.*:GpuOps.Embedding*:GpuOps.RmsNorm*:GpuOps.Rope*:GpuOps.Swiglu*:GpuOps.Argmax*:GpuMatmul.GemvBiasAndResidual:GpuMatmul.DispatchPicksByBatch:GpuMatmul.CublasLt*' \
  >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED  \]" "$OUT/memcheck.log" | head -8
timeout 50 compute-sanitizer --tool racecheck --print-limit 20 "$T" \
  --gtest_filter='GpuAttention.PrefillSoftcapWindowNoncausal:GpuAttention.DecodeManyHeadGroupsSoftcapWindow:GpuMatmul.DispatchPicksByBatch:GpuOps.ArgmaxMatchesCpuIncludingTies:GpuOps.RmsNorm*' \
  >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED  \]" "$OUT/racecheck.log" | head -8
grep "^\[bench\]" "$OUT/bench.log"

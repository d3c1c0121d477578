#!/usr/bin/env bash
# One GPU call for a GEMV iteration: build the source tarball, the matmul/engine/PDL GPU tests,
# single-shape timings, Nsight Compute on Q4_K 14336x4096, decode and batch benches.
# Usage (device tool, carry [".devdeps", ".devsrc"]): bash bench/device_q8_quick.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
stamp tests
timeout 200 $T --gtest_filter='GpuGemvQ8*:GpuMatmul*:*Engine*:*Pdl*' >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|rel " "$OUT/tests.log" | head -20
stamp shapes
one() { FATHOM_Q8_SHAPE=$1 $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1 Q6_K,4096,14336,1 Q6_K,128256,4096,1 Q8_0,14336,4096,1 Q4_0,14336,4096,1 Q4_K,14336,4096,4; do one $s; done
stamp ncu
FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 120 ncu --clock-control none -k regex:gemv_q8 --launch-skip 5 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
  $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$OUT/ncu_q4k.txt" 2>&1
grep -E "Duration|DRAM Throughput|Issue Slots|Issued Ipc|Warp Cycles Per Issued|Eligible Warps|Achieved Occupancy" "$OUT/ncu_q4k.txt" | head
stamp decode
timeout 150 $B bench --synthetic gemma3-270m,llama3.2-1b,llama3-8b --type Q4_K_M,Q8_0 -p 16 -n 128 -r 3 -q >"$OUT/dec.md" 2>&1
grep -E "tg128" "$OUT/dec.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
timeout 100 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -b 1,2,4,8 -r 2 -q >"$OUT/batch.md" 2>&1
grep -E "tg64" "$OUT/batch.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
stamp done

#!/usr/bin/env bash
# Written at the end of session 13 for the next session's first GPU call: every GPU test (incl.
# GpuGemvQ8.Q4kOneTokenEveryKernel and the review fixes of de91d2b, never GPU-run), then Nsight
# Compute on the default one-token Q4_K kernel (gemv_q4k_bulk_kernel) and the pair kernel at
# 14336 x 4096 (time, DRAM, instructions, issue, stall reasons, occupancy), racecheck + initcheck over
# the GEMV tests (not run in session 13: no device time left), then the decode rows.
# Logs straight to $OUT. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s14_start.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s14
stamp tests
timeout 240 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
for k in bulk pair; do
  FATHOM_GEMV_Q4K=$k FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 90 ncu --clock-control none -k regex:gemv_q4k --launch-skip 5 --launch-count 1 $M \
    $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$O/ncu_$k.txt" 2>&1
  echo "== ncu $k rc=$?"; grep -E "gpu__time|dram__|inst_executed|issue_active|warps_active|stalled" "$O/ncu_$k.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active|warps_active/'
done
FATHOM_MMQ_BENCH=Q4_K,14336,4096 timeout 90 ncu --clock-control none --kernel-name-base demangled -k 'regex:mma_q8_kernel<.*, 2>' --launch-skip 5 --launch-count 1 $M \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$O/ncu_mma8.txt" 2>&1
echo "== ncu mma_q8 n=8 rc=$?"; grep -E "gpu__time|dram__|inst_executed|issue_active|warps_active|stalled" "$O/ncu_mma8.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active|warps_active/'
stamp sanitize
for tool in racecheck initcheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q4k*:GpuGemvQ8.Q6k*:GpuGemvQ8.FusedGateUp*:GpuGemvQ8.GroupedQkv' >"$O/sanitize_$tool.txt" 2>&1
  echo "$tool GpuGemvQ8 rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$O/sanitize_$tool.txt" | tail -3
done
stamp bench
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128 -r 1 -q >"$O/bench.md" 2>&1; echo "bench rc=$?"
timeout 60 $B bench --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128 -r 1 -q >>"$O/bench.md" 2>&1
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,32 -r 1 -q >>"$O/bench.md" 2>&1
timeout 90 $B bench --synthetic llama3-8b --type F16,Q4_K_M -p 512,4096 -n 4 -r 1 -q >>"$O/bench.md" 2>&1
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 4096 -n 4 -r 1 -q --ubatch 4096 >>"$O/bench.md" 2>&1
grep -E "^\| [a-z]|ubatch|chunk" "$O/bench.md" | grep -v "^| model"
stamp done

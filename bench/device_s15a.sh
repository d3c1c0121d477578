#!/usr/bin/env bash
# Session 15, first GPU call: every GPU test at ba32b71 (128b54b routing fix, ba32b71 ring prologue,
# never GPU-run), memcheck + racecheck over the bulk-ring GEMV tests and the fused-RoPE attention
# test, the batch 1/8/32 decode rows (batch 8 expected back at ~1610) with FATHOM_FUSED_ROPE=0 at
# batch 8 as the A/B, then Nsight Compute on the Q4_K one-token bulk kernel (per-SASS-instruction
# executed counts and stall samples, for the instruction diet) and mma_q8 at 8 tokens.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s15a.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s15a
stamp tests
timeout 240 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
grep -A4 "Failure$" "$O/gpu_tests.log" | head -24
stamp bench
timeout 90 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 1,8,32 -r 1 -q >"$O/bench.md" 2>&1; echo "bench rc=$?"
FATHOM_FUSED_ROPE=0 timeout 40 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >"$O/bench_rope0.md" 2>&1; echo "bench rope0 rc=$?"
grep -hE "tg32" "$O/bench.md" "$O/bench_rope0.md"
stamp sanitize
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q4kOneToken*:GpuGemvQ8.Q80OneToken*:GpuGemvQ8.Q6kOneToken*:GpuAttentionDecode.FusedRope*' >"$O/sanitize_$tool.txt" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$O/sanitize_$tool.txt" | tail -3
done
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 120 ncu --clock-control none -k regex:gemv_q4k_bulk --launch-skip 5 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --section InstructionStats -o "$O/q4k_bulk" \
  $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$O/ncu_q4k_run.txt" 2>&1; echo "ncu q4k rc=$?"
timeout 60 ncu --import "$O/q4k_bulk.ncu-rep" --page source --csv --print-source sass >"$O/q4k_bulk_sass.csv" 2>&1; echo "import rc=$? $(wc -l <"$O/q4k_bulk_sass.csv") lines"
timeout 60 ncu --import "$O/q4k_bulk.ncu-rep" --page details >"$O/q4k_bulk_details.txt" 2>&1
FATHOM_MMQ_BENCH=Q4_K,14336,4096 timeout 90 ncu --clock-control none --kernel-name-base demangled -k 'regex:mma_q8_kernel<.*\(int\)2>' --launch-skip 5 --launch-count 1 $M \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$O/ncu_mma8.txt" 2>&1
echo "== ncu mma_q8 n=8 rc=$?"; grep -E "gpu__time|dram__|inst_executed|issue_active|warps_active|stalled" "$O/ncu_mma8.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active|warps_active/'
stamp done

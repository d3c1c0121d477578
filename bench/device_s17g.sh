#!/usr/bin/env bash
# Session 17: data for the next session (the per-warp-ring bf16 kernel is compute-side bound at
# 8 tokens: ~1.34 us per 256-k stage with no ring wait, device_s17e.sh): the mma tests after the
# review mends, a CUPTI profile of the batch-8 bench (which kernels fill the 4.2 ms step), and
# Nsight Compute source counters of mma_q8_bf_kernel at 8 and 32 tokens (Q4_K 14336 x 4096).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17g.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17g
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure" "$O/gpu_tests.log" | head -8
stamp profile
timeout 120 $B profile -- $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >"$O/profile_b8.txt" 2>&1; echo "profile rc=$?"
grep -iE "tok/s|top|kernel|%" "$O/profile_b8.txt" | head -40
stamp ncu
for nn in 2 8; do
  FATHOM_MMQ_BENCH=Q4_K,14336,4096 timeout 100 ncu --clock-control none --kernel-name-base demangled \
    -k "regex:mma_q8_bf_kernel<\\(int\\)$nn>" --launch-skip 5 --launch-count 1 \
    --section SourceCounters --section WarpStateStats --section MemoryWorkloadAnalysis --section SpeedOfLight --section SchedulerStats -o /tmp/bf$nn \
    $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >/tmp/ncu_run$nn.txt 2>&1; echo "ncu nt=$nn rc=$?"
  timeout 60 ncu --import /tmp/bf$nn.ncu-rep --page source --csv --print-source sass >"$O/bf${nn}_sass.csv" 2>&1; echo "import rc=$? $(wc -l <"$O/bf${nn}_sass.csv") lines"
  timeout 60 ncu --import /tmp/bf$nn.ncu-rep --page details >>"$O/bf_details.txt" 2>&1
done
grep -E "Duration|DRAM Throughput|Executed Ipc|Issue Slots|Warp Cycles Per Issued|No Eligible|L2 Hit|Registers Per|Grid Size|Stall" "$O/bf_details.txt" | head -40
stamp done

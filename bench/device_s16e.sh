#!/usr/bin/env bash
# Session 16: Nsight Compute source counters of the bf16 mma_q8 variant (Q4_K 14336 x 4096) at 32 and
# 8 tokens, to see what bounds it at ~18% issue efficiency (51.6 us against ~9 us of issue time).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16e.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16e
stamp ncu
for nn in 8 2; do
FATHOM_MMQ_BF16_MIN=2 FATHOM_MMQ_BENCH=Q4_K,14336,4096 timeout 100 ncu --clock-control none --kernel-name-base demangled \
  -k "regex:mma_q8_kernel<.*\\(int\\)$nn, \\(bool\\)1>" --launch-skip 5 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --section MemoryWorkloadAnalysis --section SpeedOfLight --section Occupancy --section LaunchStats -o /tmp/bf$nn \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >/tmp/ncu_run$nn.txt 2>&1; echo "ncu nt=$nn rc=$?"
timeout 60 ncu --import /tmp/bf$nn.ncu-rep --page source --csv --print-source sass >"$O/bf${nn}_sass.csv" 2>&1; echo "import rc=$? $(wc -l <"$O/bf${nn}_sass.csv") lines"
timeout 60 ncu --import /tmp/bf$nn.ncu-rep --page details >>"$O/bf_details.txt" 2>&1
done
grep -E "Duration|DRAM Throughput|Executed Ipc|Issue Slots|Warp Cycles Per Issued|Achieved Occupancy|L2 Hit|Registers Per|Grid Size|Block Size|Dynamic Shared" "$O/bf_details.txt" | head -40
stamp done

#!/usr/bin/env bash
# Session 16, first GPU call: the GEMV and mma_q8 GPU tests (gemv_q8 commits after fb6d79f were
# never GPU-run), memcheck on the one-token kernels, Nsight Compute source counters + memory
# workload of mma_q8 at 8 and 32 tokens (Q4_K 14336 x 4096), the mma_q8 kernel bench and the
# batch 8/16/32 rows as the baseline for the bf16 variant.
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16a.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16a
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*:GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "gemv+mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|tests ran" "$O/gpu_tests.log" | tail -8
stamp memcheck
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q4kOneToken*:GpuGemvQ8.Q80OneToken*:GpuGemvQ8.Q6kOneToken*' >"$O/memcheck.txt" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp ncu
for nn in 2 8; do
FATHOM_MMQ_BENCH=Q4_K,14336,4096 timeout 100 ncu --clock-control none --kernel-name-base demangled -k "regex:mma_q8_kernel<.*\\(int\\)$nn>" --launch-skip 5 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --section MemoryWorkloadAnalysis --section SpeedOfLight --section Occupancy -o /tmp/mma$nn \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >/tmp/ncu_run$nn.txt 2>&1; echo "ncu nt=$nn rc=$?"
timeout 60 ncu --import /tmp/mma$nn.ncu-rep --page source --csv --print-source sass >"$O/mma${nn}_sass.csv" 2>&1; echo "import rc=$? $(wc -l <"$O/mma${nn}_sass.csv") lines"
timeout 60 ncu --import /tmp/mma$nn.ncu-rep --page details >>"$O/mma_details.txt" 2>&1
done
grep -E "Duration|DRAM Throughput|Memory Throughput|Executed Ipc|Issue Slots|Warp Cycles Per Issued|Achieved Occupancy|L2 Hit|Mem Busy|Max Bandwidth" "$O/mma_details.txt" | head -40
stamp mma-bench
FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q4_K,1024,4096;Q6_K,4096,14336' timeout 60 $T \
  --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep "mmq-bench" | tee "$O/mma_kbench.log"
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

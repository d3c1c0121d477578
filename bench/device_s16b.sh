#!/usr/bin/env bash
# Session 16, second GPU call: the bf16 variant of mma_q8 (Q4_K, e7fffd7): its tests first (own
# process), memcheck on them, every other GPU test, the kernel bench int8 vs bf16
# (FATHOM_MMQ_BF16_MIN=65 never / 2 always), the batch rows at the default and both A/Bs.
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16b.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16b
stamp mma-tests
timeout 90 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure|max err" "$O/gpu_tests.log" | head -12
stamp memcheck
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuMmaQ8.Bf16*' >"$O/memcheck.txt" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp mma-bench
for m in 65 2; do
  FATHOM_MMQ_BF16_MIN=$m FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q4_K,1024,4096' timeout 60 $T \
    --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep "mmq-bench" | sed "s/^/min$m /"
done | tee "$O/mma_kbench.log"
stamp rows
ROW_TIMEOUT=100
bench_row batch X=1 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
bench_row batch_int8 FATHOM_MMQ_BF16_MIN=65 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 16,32
bench_row batch_bf_all FATHOM_MMQ_BF16_MIN=2 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8
stamp tests
timeout 260 $T --gtest_filter='-GpuMmaQ8.*' >>"$O/gpu_tests.log" 2>&1; echo "other gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | tail -14
stamp done

#!/usr/bin/env bash
# Session 16: the bf16 variant with a one-LOP3 nibble unpack and an x staging without a division per
# element (8 loads in flight): its tests, memcheck, the kernel bench (bf16 always / never), batch rows.
# Compare with device_s16b.sh (d3264b3): 14336 x 4096 n = 32 51.61 us, 4096 x 14336 41.84 us;
# device_s16d.sh: batch 8 / 16 / 32 1576.9 / 2446.6 / 3630.0 tok/s.
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16f.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16f
stamp mma-tests
timeout 90 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | head -8
stamp memcheck
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuMmaQ8.Bf16*' >"$O/memcheck.txt" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp mma-bench
for m in 2; do
  FATHOM_MMQ_BF16_MIN=$m FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q4_K,1024,4096' timeout 60 $T \
    --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep "mmq-bench" | sed "s/^/min$m /"
done | tee "$O/mma_kbench.log"
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

#!/usr/bin/env bash
# Prepared at the end of session 17 for session 18's first GPU call: Q6_K in the bf16 variant
# (mma_q8_bf_kernel<Q6_K>, written without a GPU; off unless FATHOM_MMQ_BF16_Q6K=1): the mma tests
# (GpuMmaQ8.Bf16VariantQ6K switches it on itself), memcheck on it, kernel times against the int8
# kernel (device_s17h.sh: Q6_K 4096 x 14336 35.1 / 48.0 / 116.5 us at 8 / 16 / 32 tokens), the
# engine tests and batch rows with it on and off (off: 1883.6 / 3517.0 / 4580.4 tok/s).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s18a.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s18a
stamp mma-tests
# The new kernel in its own process first: a device fault poisons the rest of a gtest process.
gtest_run "q6k test" gpu_q6k.log 60 'GpuMmaQ8.Bf16VariantQ6K'
gtest_run "mma tests" gpu_tests.log 150 'GpuMmaQ8.*:-GpuMmaQ8.Bf16VariantQ6K'
stamp memcheck
timeout 90 compute-sanitizer --tool memcheck $T --gtest_filter='GpuMmaQ8.Bf16VariantQ6K' >"$O/memcheck.log" 2>&1; echo "memcheck rc=$?"
grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.log" | head -4
stamp bench
for q6 in 1 0; do mmq_bench "q6=$q6" 'Q6_K,4096,14336;Q6_K,1024,4096;Q6_K,128256,4096' FATHOM_MMQ_BF16_Q6K=$q6; done
grep -E "mmq-bench|median" "$O/probe.txt"
stamp engine-tests
gtest_run "engine tests (q6k on)" gpu_tests.log 150 'Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*' FATHOM_MMQ_BF16_Q6K=1
stamp rows
echo "== batch" >"$O/bench.md"
for q6 in 1 0; do
  FATHOM_MMQ_BF16_Q6K=$q6 timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch q6=$q6 rc=$?"
done
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

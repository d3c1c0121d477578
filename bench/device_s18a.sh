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
timeout 60 $T --gtest_filter='GpuMmaQ8.Bf16VariantQ6K' >"$O/gpu_q6k.log" 2>&1; echo "q6k test rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure|error" "$O/gpu_q6k.log" | head -12
timeout 150 $T --gtest_filter='GpuMmaQ8.*:-GpuMmaQ8.Bf16VariantQ6K' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure|error" "$O/gpu_tests.log" | head -12
stamp memcheck
timeout 90 compute-sanitizer --tool memcheck $T --gtest_filter='GpuMmaQ8.Bf16VariantQ6K' >"$O/memcheck.log" 2>&1; echo "memcheck rc=$?"
grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.log" | head -4
stamp bench
for q6 in 1 0; do
  FATHOM_MMQ_BF16_Q6K=$q6 FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BENCH='Q6_K,4096,14336;Q6_K,1024,4096;Q6_K,128256,4096' timeout 90 \
    $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" | sed "s/^/q6=$q6 /" >>"$O/probe.txt"
done
grep -E "mmq-bench|median" "$O/probe.txt"
stamp engine-tests
FATHOM_MMQ_BF16_Q6K=1 timeout 150 $T --gtest_filter='Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*' >>"$O/gpu_tests.log" 2>&1; echo "engine tests (q6k on) rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | tail -4
stamp rows
echo "== batch" >"$O/bench.md"
for q6 in 1 0; do
  FATHOM_MMQ_BF16_Q6K=$q6 timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch q6=$q6 rc=$?"
done
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

#!/usr/bin/env bash
# Session 15, third GPU call: x staged with batched loads in every one-token int8 GEMV (stage_x<1> ->
# stage_x1_batched; Nsight Compute put half the Q4_K bulk kernel's warp-stall samples on the old
# one-column loop's dependent x loads) and the 16-super-block Q4_K stage as the default: GEMV and
# engine tests, kernel times, decode rows (8B Q4_K_M / Q8_0, 1B Q4_K_M, batch 8); then the mma_q8
# helper's steps (dd84eb8: fewer instructions per super-block; bench/device_steps_mma.sh).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s15c.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s15c
stamp tests
timeout 120 $T --gtest_filter='GpuGemvQ8.*:Engine.*:Tiny*' >"$O/tests.log" 2>&1; echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/tests.log" | head -20
grep -A4 "Failure$" "$O/tests.log" | head -24
stamp bench-one
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1 Q6_K,4096,14336,1 Q8_0,14336,4096,1 Q4_0,14336,4096,1; do
  FATHOM_Q8_SHAPE=$s timeout 30 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed"
done | tee "$O/bench_one.log"
stamp bench
timeout 100 $B bench --synthetic llama3-8b --type Q4_K_M,Q8_0 -d 512 -n 128 -r 1 -q >"$O/bench.md" 2>&1; echo "8b rc=$?"
timeout 60 $B bench --synthetic llama3.2-1b --type Q4_K_M -d 512 -n 128 -r 1 -q >>"$O/bench.md" 2>&1; echo "1b rc=$?"
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >>"$O/bench.md" 2>&1; echo "b8 rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp mma
source bench/device_steps_mma.sh
stamp done

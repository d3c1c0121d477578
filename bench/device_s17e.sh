#!/usr/bin/env bash
# Session 17: the per-warp ring at depth 2 for 32 tokens (two mma chains reverted: no change in s17d):
# mma tests, kernel probe, batch rows (device_s17d.sh before: 22.74 / 26.04 / 36.91 us on
# 14336 x 4096 at 8 / 16 / 32 tokens, 42.19 on 4096 x 14336 at 32; batch 1912.4 / 3511.8 / 4385.5).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17e.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17e
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure" "$O/gpu_tests.log" | head -8
stamp probe
FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BF16_MIN=2 FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q4_K,1024,4096' timeout 60 \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" >>"$O/probe.txt"
grep -E "mmq-bench|median" "$O/probe.txt"
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

#!/usr/bin/env bash
# Session 14, check of the batch-decode routing fix after the last call (Q/K + V split GEMVs kept
# out of the 2..16-token range, where the separate matmuls take the tensor-core kernel): engine
# tests, then batch 8 and batch 1 decode, and batch 8 with the stand-alone rope kernel.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s14_fix.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s14x
stamp tests
timeout 60 $T --gtest_filter='Engine.*:Tiny/*' >"$O/tests.log" 2>&1; echo "engine tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]" "$O/tests.log" | head -8
stamp bench
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 1,8 -r 1 -q >"$O/bench.md" 2>&1; echo "bench rc=$?"
grep -E "tg32" "$O/bench.md"
FATHOM_FUSED_ROPE=0 timeout 40 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >"$O/bench_rope0.md" 2>&1; echo "bench rope0 rc=$?"
grep -E "tg32" "$O/bench_rope0.md"
stamp done

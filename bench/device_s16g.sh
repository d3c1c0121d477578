#!/usr/bin/env bash
# Session 16, last GPU call: the bf16 variant from 8 tokens for the engine's dequant-sized matrices
# (MmaQ8Params::allow_bf16): mma_q8 tests (own process), the engine / tiny-model / prefill / slices
# tests, batch 8 / 16 / 32 (device_s16f.sh: 1585.3 / 2458.9 / 3668.8 with the int8 kernel at 8..16).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16g.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16g
stamp mma-tests
timeout 90 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | head -8
stamp engine-tests
timeout 150 $T --gtest_filter='Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*:GpuGemmSplit.*:Pdl*' >>"$O/gpu_tests.log" 2>&1; echo "engine tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|slices per pass vs" "$O/gpu_tests.log" | tail -8
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

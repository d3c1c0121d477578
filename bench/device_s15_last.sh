#!/usr/bin/env bash
# Session 15, closing GPU call after reverting the mma_q8 helper commits (measured slower in
# device_s15_final.sh: 14336 x 4096 at 8 tokens 32.19 us, batch 8 1497.8 tok/s): the tests that
# call's 200 s limit cut off (Tiny/EngineVsReference, Tiny/PdlBitExact), the mma_q8 tests on the
# restored kernel, and the same-harness A/B: mma_q8 kernel bench + batch 8/16/32 decode.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s15_last.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s15l
stamp tests
timeout 100 $T --gtest_filter='Tiny/*:GpuMmaQ8.*:EngineWorkspace.*:Engine.*' >"$O/gpu_tests.log" 2>&1; echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|shared vs separate" "$O/gpu_tests.log" | tail -10
stamp bench
FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q6_K,4096,14336' timeout 30 $T --gtest_also_run_disabled_tests \
  --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep "mmq-bench" | tee "$O/mma_kbench.log"
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >"$O/bench.md" 2>&1; echo "bench rc=$?"
grep -E "^\| [a-z]|^memory" "$O/bench.md" | grep tg
stamp done

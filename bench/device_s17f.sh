#!/usr/bin/env bash
# Session 17, last GPU call: every GPU test at the final code, memcheck and racecheck on the bf16
# tests (the per-warp tensor-map rings), and the 8B Q4_K_M batch-1 row as a regression guard
# (session 16: 423.3 tok/s). Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17f.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17f
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_mma.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_mma.log" | head -8
stamp all-tests
timeout 330 $T --gtest_filter='-GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "all other tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|^\[  SKIPPED \] [0-9]|exception" "$O/gpu_tests.log" | head -12
stamp memcheck
timeout 90 compute-sanitizer --tool memcheck $T --gtest_filter='GpuMmaQ8.Bf16*' >"$O/memcheck.log" 2>&1; echo "memcheck rc=$?"
grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.log" | head -4
stamp racecheck
timeout 90 compute-sanitizer --tool racecheck --racecheck-report hazard $T --gtest_filter='GpuMmaQ8.Bf16*' >"$O/racecheck.log" 2>&1; echo "racecheck rc=$?"
grep -E "RACECHECK SUMMARY|PASSED|FAILED" "$O/racecheck.log" | head -4
stamp rows
ROW_TIMEOUT=100 bench_row 8b_q4km_tg X=1 --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
stamp done

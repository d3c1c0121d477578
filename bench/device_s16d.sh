#!/usr/bin/env bash
# Session 16, last GPU call (566f6cc): the tests changed since device_s16c.sh (EngineFfnSlicesMatchWhole,
# GpuMmaQ8.Bf16*, SlicesPerPass.*), memcheck on the bf16 variant and the half-pass engine test, then
# every issue-6/8 row, one run each.
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16d.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16d
stamp tests
timeout 120 $T --gtest_filter='GpuPrefill.*:GpuMmaQ8.Bf16*:SlicesPerPass.*:Tiny/*' >"$O/gpu_tests.log" 2>&1; echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|sliced vs whole" "$O/gpu_tests.log" | tail -10
stamp memcheck
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuMmaQ8.Bf16VariantFusedGateUp' >"$O/memcheck.txt" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp rows
bench_row 8b_tg X=1 --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128
bench_row 1b_tg X=1 --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
bench_row 8b_d32k X=1 --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
bench_row 8b_batch X=1 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
bench_row 8b_pp X=1 --synthetic llama3-8b --type F16,Q4_K_M,Q8_0 -p 512,4096 -n 2
stamp done

#!/usr/bin/env bash
# Session 16, third GPU call (6fc2770 + the helper's slices per pass 52fb71f/c62f55e): every GPU test
# (mma_q8 first, own process), then the prefill and batch rows with the slices-per-pass A/B
# (FATHOM_SLICES_PER_PASS=0) and the bf16-variant A/B (FATHOM_MMQ_BF16_MIN=65 never, 9 from 9 tokens).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s16c.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s16c
stamp mma-tests
timeout 90 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | head -8
stamp tests
timeout 280 $T --gtest_filter='-GpuMmaQ8.*' >>"$O/gpu_tests.log" 2>&1; echo "other gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|slices per pass vs" "$O/gpu_tests.log" | tail -12
stamp rows
ROW_TIMEOUT=100
bench_row pp X=1 --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2
bench_row pp_slices0 FATHOM_SLICES_PER_PASS=0 --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2
bench_row batch X=1 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
bench_row batch_slices0 FATHOM_SLICES_PER_PASS=0 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 32
bench_row batch_bf9 FATHOM_MMQ_BF16_MIN=9 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 16
stamp done

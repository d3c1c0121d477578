#!/usr/bin/env bash
# Short follow-up of bench/device_pre.sh: build, the GpuPrefill tests and the GEMM paths they
# share, the dequant kernel bench, Q4_K_M pp512/pp4096. Usage (carry [".devdeps", ".devsrc-pre"]):
#   bash bench/device_pre_check.sh .devsrc-pre/head.tgz
# (Session 12: the old decode kernel was deleted, so FATHOM_ATTN_DECODE=old below is ignored now;
# this script records the runs it made.)
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
export FATHOM_ATTN_DECODE=old
stamp tests
FATHOM_ATTN_PREFILL=scalar timeout 40 $T --gtest_filter='GpuPrefill.*:GpuMatmul.Cublas*:GemmPlan*' >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|Failure|Expected|worst|\[prefill\]" "$OUT/tests.log" | head -24
stamp dequant-bench
timeout 20 $T --gtest_also_run_disabled_tests --gtest_filter='GpuPrefill.DISABLED_BenchDequant' >"$OUT/dequant_bench.log" 2>&1
echo "dequant bench rc=$?"; grep '\[prefill\]' "$OUT/dequant_bench.log"
stamp bench
FATHOM_ATTN_PREFILL=scalar timeout 30 $B bench --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 1 -r 2 -q >"$OUT/bench.txt" 2>&1
echo "bench rc=$?"; grep -E "pp|rror" "$OUT/bench.txt"
stamp done

#!/usr/bin/env bash
# One GPU call for the 16-warp / decoded-scale tensor-core matmul (matmul_mma_q8, session 12):
# build the source tarball; GpuMmaQ8 tests + engine end-to-end tests (also with batch 1 routed to
# the kernel); the kernel bench; decode benches of synthetic Llama-3-8B Q4_K_M at batch 1 (GEMV vs
# this kernel: FATHOM_MMQ_MIN_TOKENS=1) and 8 / 16. Usage (carry [".devdeps", ".devsrc-X"]):
#   bash bench/device_mmq2.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$1"
stamp tests
timeout 150 $T --gtest_filter='GpuMmaQ8.*:Tiny/EngineVsReference*:Engine.BatchedDecode*' >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst element|exception" "$OUT/tests.log" | head -30
FATHOM_MMQ_MIN_TOKENS=1 timeout 90 $T --gtest_filter='Tiny/EngineVsReference*:Engine.BatchedDecode*' >"$OUT/tests_b1.log" 2>&1
echo "engine tests, batch 1 on the tensor-core kernel: rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|exception" "$OUT/tests_b1.log" | head -20
stamp kernels
timeout 100 $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$OUT/kbench.log" 2>&1
echo "kbench rc=$?"; grep "mmq-bench" "$OUT/kbench.log"
bench() {  # label, batches, env...
  local label=$1 b=$2; shift 2
  env "$@" timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -r 2 -q -b $b >"$OUT/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg64" "$OUT/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
bench b1_gemv 1
bench b1_mmq 1 FATHOM_MMQ_MIN_TOKENS=1
bench b8_16 8,16
stamp done

#!/usr/bin/env bash
# One GPU call for the tensor-core small-batch matmul (src/cuda/matmul_mma_q8.cu): build the
# source tarball, its GPU tests and the engine end-to-end tests, the kernel bench (next to the
# dp4a GEMV), then decode benches of synthetic Llama-3-8B Q4_K_M with the path on and off
# (FATHOM_MMQ=0). Usage (device tool, carry [".devdeps", ".devsrc-mmq"]):
#   bash bench/device_mmq.sh .devsrc-mmq/head.tgz [batches (default 1,2,4,8)] [ab: also with the path off]
source "$(dirname "$0")/device_lib.sh"
device_begin "$1"
stamp tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*:Tiny/EngineVsReference*:Engine.BatchedDecode*:Engine.MemoryBreakdown*' \
  >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst element|relative error|exception" "$OUT/tests.log" | head -30
FATHOM_MMQ=0 timeout 30 $T --gtest_filter='*tiny_llama_Q2_K*' >"$OUT/tests_q2k_off.log" 2>&1
echo "tiny_llama_Q2_K with FATHOM_MMQ=0 rc=$?"; grep -E "relative error" "$OUT/tests_q2k_off.log" | head -3
stamp kernels
timeout 100 $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$OUT/kbench.log" 2>&1
echo "kbench rc=$?"; grep "mmq-bench" "$OUT/kbench.log"
bench() {  # label, env..., (batches in $BARGS)
  local label=$1; shift
  env "$@" timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -r 2 -q $BARGS >"$OUT/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg64" "$OUT/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
BARGS="-b ${2:-1,2,4,8}" bench ab_mmq FATHOM_MMQ=1
[ -n "${3:-}" ] && BARGS="-b ${2:-1,2,4,8}" bench ab_off FATHOM_MMQ=0
BARGS="-b 32" bench b32_mmq FATHOM_MMQ=1
BARGS="-b 32" bench b32_off FATHOM_MMQ=0
stamp done

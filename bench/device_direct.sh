#!/usr/bin/env bash
# One GPU call for the register-direct Q4_K batch-1 GEMV (gemv_q4k_direct_kernel in
# src/cuda/matmul_gemv_q8.cu, session 12): GEMV and engine tests, kernel A/B against the
# shared-memory-ring kernel (FATHOM_GEMV_DIRECT=0), decode A/B on synthetic Llama-3-8B Q4_K_M and
# Llama-3.2-1B Q4_K_M. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_direct.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$1"
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*:Tiny/EngineVsReference*:Engine.*-Engine.RealGemma3*' >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst element|exception" "$OUT/tests.log" | head -30
stamp kernels
one() { env "$@" $T --gtest_also_run_disabled_tests --gtest_filter='*GemvQ8.DISABLED_BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1 Q4_K,2048,2048,1 Q4_K,8192,2048,1; do
  echo "$s ring:   $(one FATHOM_Q8_SHAPE=$s FATHOM_GEMV_DIRECT=0)"
  echo "$s direct: $(one FATHOM_Q8_SHAPE=$s)"
done
bench() {  # label, shape, env...
  local label=$1 shape=$2; shift 2
  env "$@" timeout 60 $B bench --synthetic $shape --type Q4_K_M -d 512 -n 128 -r 2 -q >"$OUT/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg128" "$OUT/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
bench 8b_direct llama3-8b
bench 8b_ring llama3-8b FATHOM_GEMV_DIRECT=0
bench 1b_direct llama3.2-1b
bench 1b_ring llama3.2-1b FATHOM_GEMV_DIRECT=0
stamp done

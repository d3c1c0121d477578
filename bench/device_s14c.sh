#!/usr/bin/env bash
# Session 14, third GPU call: the fused-RoPE decode attention, second cut (8f2d034), and the
# helper's one-token Q8_0 bulk kernel (27e2707). Every GPU test, memcheck over the new Q8_0 test,
# the Q8_0 kernel A/B on the Llama-3-8B shapes (GpuGemvQ8.DISABLED_BenchOne), then the decode
# rows: fused RoPE on / off (FATHOM_FUSED_ROPE) and Q8_0 bulk / ring (FATHOM_GEMV_Q8_0).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s14c.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s14c
stamp tests
timeout 240 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
grep -A4 "Failure$" "$O/gpu_tests.log" | head -30
stamp q80-kernels
for s in Q8_0,14336,4096,1 Q8_0,4096,14336,1 Q8_0,4096,4096,1 Q8_0,1024,4096,1 Q8_0,128256,4096,1; do
  for k in bulk ring; do
    echo -n "$k: "
    FATHOM_GEMV_Q8_0=$k FATHOM_Q8_SHAPE=$s timeout 40 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed"
  done
done | tee "$O/bench_one.log"
stamp bench
b() {  # label, env, args...
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout 90 $B bench "$@" -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "tg" | awk -F'|' '{print $2,$4,$5,$7,$8}'
}
for f in 1 0; do
  b 8b_f$f FATHOM_FUSED_ROPE=$f --synthetic llama3-8b --type Q4_K_M -d 512 -n 128 -r 2
  b 1b_f$f FATHOM_FUSED_ROPE=$f --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128 -r 2
done
b 8b_d32k_f1 FATHOM_FUSED_ROPE=1 --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32 -r 1
for k in bulk ring; do b q80_$k FATHOM_GEMV_Q8_0=$k --synthetic llama3-8b --type Q8_0 -d 512 -n 128 -r 1; done
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q80OneTokenEveryKernel' >"$O/memcheck.txt" 2>&1
echo "memcheck Q80 rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -2
stamp done

#!/usr/bin/env bash
# Session 14, last GPU call: every GPU test at the final commit, the Q6_K one-token kernel A/B
# (bulk vs direct) on the Llama-3-8B shapes, every issue-6/8 row (decode 8B Q4_K_M / Q8_0 / F16,
# 1B Q4_K_M / F16, depth 32k, batch 8 / 32; prefill pp512 / pp4096 F16 / Q4_K_M / Q8_0), then the
# A/Bs of this session's defaults (Q6_K direct, grouped F16 GEMV off, Q4_K_M prefill at the old
# 1024-token chunk) and memcheck over the new Q6_K test.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s14_final.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s14f
stamp tests
timeout 230 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
grep -A4 "Failure$" "$O/gpu_tests.log" | head -24
stamp q6k-kernels
for s in Q6_K,4096,14336,1 Q6_K,1024,4096,1 Q6_K,128256,4096,1; do
  for k in bulk direct; do
    echo -n "$k: "
    FATHOM_GEMV_Q6K=$k FATHOM_Q8_SHAPE=$s timeout 30 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed"
  done
done | tee "$O/bench_one.log"
stamp bench
b() {  # label, env, args...
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout 100 $B bench "$@" -r 1 -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "^\| [a-z]|^memory" | grep -v "^| model" | awk -F'|' 'NF>2{print $2,$4,$5,$6,$7,$8,$10} NF<=2{print}'
}
b 8b_tg X=1 --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128
b 1b_tg X=1 --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
b 8b_d32k X=1 --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
b 8b_batch X=1 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,32
b 8b_pp X=1 --synthetic llama3-8b --type F16,Q4_K_M,Q8_0 -p 512,4096 -n 2
stamp ab
b 8b_q6direct FATHOM_GEMV_Q6K=direct --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
b 1b_f16_nogroup FATHOM_GEMV_HALF_GROUPED=0 --synthetic llama3.2-1b --type F16 -d 512 -n 128
b 8b_f16_nogroup FATHOM_GEMV_HALF_GROUPED=0 --synthetic llama3-8b --type F16 -d 512 -n 64
b 8b_pp_ub1024 X=1 --synthetic llama3-8b --type Q4_K_M -p 4096 -n 2 --ubatch 1024
stamp memcheck
timeout 45 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q6k*' >"$O/memcheck.txt" 2>&1
echo "memcheck Q6k rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -2
stamp done

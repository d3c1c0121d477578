#!/usr/bin/env bash
# Session 14, second GPU call: decode attention with RoPE + KV store fused in (c0859d8).
# Every GPU test (incl. GpuAttentionDecode.FusedRopeMatchesSeparateKernels), memcheck + racecheck
# over the fused test, decode rows fused vs FATHOM_FUSED_ROPE=0, then profiles of the Q4_K_M
# pp4096 prefill (where the dequant time goes) and of the llama3.2-1b F16 decode step (launches).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s14b.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s14b
stamp tests
timeout 240 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
grep -B2 -A8 "FusedRope.*Failure\|differ" "$O/gpu_tests.log" | head -30
stamp sanitize
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 3 $T --gtest_filter='GpuAttentionDecode.FusedRope*' >"$O/sanitize_$tool.txt" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$O/sanitize_$tool.txt" | tail -2
done
stamp bench
b() {  # label, env, args...
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout 90 $B bench "$@" -r 2 -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "^\| [a-z]" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$7,$8}'
}
for f in 1 0; do
  b 8b_f$f FATHOM_FUSED_ROPE=$f --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
  b 1b_f$f FATHOM_FUSED_ROPE=$f --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
  b 8b_d32k_f$f FATHOM_FUSED_ROPE=$f --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
done
stamp profile
timeout 90 $B profile --synthetic llama3-8b --type Q4_K_M --prefill 4096 -n 2 >"$O/profile_pp.txt" 2>&1; echo "profile pp rc=$?"
sed -n '/prefill/,/^$/p' "$O/profile_pp.txt" | head -40
timeout 60 $B profile --synthetic llama3.2-1b --type F16 -n 32 >"$O/profile_1b.txt" 2>&1; echo "profile 1b rc=$?"
grep -E "decode|step|kernel|%" "$O/profile_1b.txt" | head -40
stamp done

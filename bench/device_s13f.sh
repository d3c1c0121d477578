#!/usr/bin/env bash
# Session 13, last GPU call: every GPU test (incl. the split-K decode attention that merges in its
# last block, afb94e9), GEMV + engine tests with the bulk-copy Q4_K kernel, memcheck over the new
# kernels, the issue-target bench rows (issues 6 and 8), and the bulk vs pair Q4_K A/B. Logs go
# straight to $OUT (a call cut short still returns what ran).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s13f.sh .devsrc-X/head.tgz
# (Session-13 record: FATHOM_GEMV_BULK=1 selected the bulk-copy Q4_K kernel at the commits this ran
# at; since 9387aa2 the switch is FATHOM_GEMV_Q4K=bulk|pair and FATHOM_GEMV_BULK does nothing.)
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s13
stamp tests
timeout 220 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
FATHOM_GEMV_BULK=1 timeout 90 $T --gtest_filter='GpuGemvQ8.*:Tiny/EngineVsReference*' 2>&1 | grep -E "^\[  (PASSED|FAILED) " | sed 's/^/bulk: /'
stamp kernels
one() { env "$@" timeout 30 $T --gtest_also_run_disabled_tests --gtest_filter='*GemvQ8.DISABLED_BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,6144,4096,1; do
  echo "pair $(one FATHOM_Q8_SHAPE=$s)"; echo "bulk $(one FATHOM_Q8_SHAPE=$s FATHOM_GEMV_BULK=1)"
done | tee "$O/kernels.txt"
b() {  # label, args...
  local label=$1; shift
  echo "== $label" >>"$O/bench_all.md"
  timeout 90 $B bench "$@" -r 1 -q >>"$O/bench_all.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench_all.md" | grep -E "^\| [a-z]" | grep -v "^| model"
}
stamp bench
b 8b_tg --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128
b 1b_tg --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
b 8b_batch --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
b 8b_depth --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
b 8b_pp --synthetic llama3-8b --type Q4_K_M,F16 -p 512,4096 -n 4
export FATHOM_GEMV_BULK=1
b 8b_tg_bulk --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
b 1b_tg_bulk --synthetic llama3.2-1b --type Q4_K_M -d 512 -n 128
unset FATHOM_GEMV_BULK
stamp memcheck
for f in 'GpuGemvQ8.*' 'GpuAttentionDecode.*'; do
  FATHOM_GEMV_BULK=1 timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter="$f" >"$O/sanitize.txt" 2>&1
  echo "memcheck bulk $f rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/sanitize.txt" | tail -3
done
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.*' >"$O/sanitize.txt" 2>&1
echo "memcheck pair/q6k rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/sanitize.txt" | tail -3
stamp done

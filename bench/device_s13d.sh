#!/usr/bin/env bash
# Session 13, fourth GPU call: the pair-per-lane Q4_K kernel (default) against the previous
# register-direct one (FATHOM_GEMV_Q4K=direct): GEMV + engine tests with both, single shapes,
# decode on synthetic Llama-3-8B / 3.2-1B Q4_K_M, ncu instruction counts.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s13d.sh .devsrc-X/head.tgz
# (Session-13 record: FATHOM_GEMV_Q4K=direct selected session 12's kernel at the commit this ran at;
# that kernel was removed later in the session, and the switch now takes bulk|pair only.)
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s13
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*:Tiny/EngineVsReference*:Engine.*-Engine.RealGemma3*' >"$O/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst|exception" "$O/tests.log" | head -20
FATHOM_GEMV_Q4K=direct timeout 60 $T --gtest_filter='GpuGemvQ8.*' 2>&1 | grep -E "^\[  (PASSED|FAILED) " | sed 's/^/direct0: /'
stamp shapes
one() { env "$@" timeout 30 $T --gtest_also_run_disabled_tests --gtest_filter='*GemvQ8.DISABLED_BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,6144,4096,1 Q4_K,1024,4096,1 Q4_K,8192,2048,1 Q4_K,2048,2048,1; do
  echo "pair    $(one FATHOM_Q8_SHAPE=$s)"; echo "direct0 $(one FATHOM_Q8_SHAPE=$s FATHOM_GEMV_Q4K=direct)"
done | tee "$O/kernels.txt"
bench() {  # label, shape, env...
  local label=$1 shape=$2; shift 2
  env "$@" timeout 60 $B bench --synthetic $shape --type Q4_K_M -d 512 -n 128 -r 2 -q >"$O/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg128" "$O/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
bench 8b llama3-8b
bench 8b_direct0 llama3-8b FATHOM_GEMV_Q4K=direct
bench 1b llama3.2-1b
bench 1b_direct0 llama3.2-1b FATHOM_GEMV_Q4K=direct
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active'
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1; do
  FATHOM_Q8_SHAPE=$s timeout 60 ncu --clock-control none -k regex:gemv_q --launch-skip 5 --launch-count 1 $M \
    $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' > "$O/ncu.txt" 2>&1
  echo "== ncu $s"; grep -E "gpu__time|dram__|inst_executed|issue_active" "$O/ncu.txt"
done
stamp done

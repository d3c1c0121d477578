#!/usr/bin/env bash
# Session 13, second GPU call: the bulk-copy Q4_K GEMV (FATHOM_GEMV_BULK=1) -- GEMV and engine
# tests with it, single shapes and decode A/B against the register-direct kernel -- plus a CUPTI
# profile of decode with PDL off (each kernel's own duration, no overlap) and Nsight Compute stall
# reasons for both kernels. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s13b.sh .devsrc-X/head.tgz
# (Session-13 record: FATHOM_GEMV_BULK=1 selected the bulk-copy Q4_K kernel at the commit this ran
# at; since 9387aa2 the switch is FATHOM_GEMV_Q4K=bulk|pair and FATHOM_GEMV_BULK does nothing.)
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s13
stamp tests
FATHOM_GEMV_BULK=1 timeout 120 $T --gtest_filter='GpuGemvQ8.*:Tiny/EngineVsReference*:Engine.*-Engine.RealGemma3*' >"$O/tests.log" 2>&1
echo "bulk tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst|exception" "$O/tests.log" | head -20
stamp shapes
one() { env "$@" timeout 30 $T --gtest_also_run_disabled_tests --gtest_filter='*GemvQ8.DISABLED_BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,6144,4096,1 Q4_K,1024,4096,1 Q4_K,8192,2048,1 Q4_K,2048,2048,1; do
  echo "direct $(one FATHOM_Q8_SHAPE=$s)"; echo "bulk   $(one FATHOM_Q8_SHAPE=$s FATHOM_GEMV_BULK=1)"
done | tee "$O/kernels.txt"
bench() {  # label, shape, env...
  local label=$1 shape=$2; shift 2
  env "$@" timeout 60 $B bench --synthetic $shape --type Q4_K_M -d 512 -n 128 -r 2 -q >"$O/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg128" "$O/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
bench 8b_direct llama3-8b
bench 8b_bulk llama3-8b FATHOM_GEMV_BULK=1
bench 1b_direct llama3.2-1b
bench 1b_bulk llama3.2-1b FATHOM_GEMV_BULK=1
stamp profile-nopdl
FATHOM_PDL=0 timeout 90 $B profile --synthetic llama3-8b --type Q4_K_M --prefill 512 -n 32 >"$O/profile_nopdl.txt" 2>&1; echo "profile rc=$?"
grep -E "decode per token|^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9.]+ " "$O/profile_nopdl.txt" | head -14
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
for k in direct bulk; do
  if [ $k = bulk ]; then e=FATHOM_GEMV_BULK=1; else e=X=1; fi
  env $e FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 90 ncu --clock-control none -k regex:gemv_q4k_$k --launch-skip 5 --launch-count 1 $M \
    $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$O/ncu_$k.txt" 2>&1
  echo "== ncu $k rc=$?"; grep -E "gpu__time|dram__|inst_executed|issue_active|stalled" "$O/ncu_$k.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active/' | head -30
done
stamp done

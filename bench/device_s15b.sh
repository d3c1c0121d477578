#!/usr/bin/env bash
# Session 15, second GPU call: the Q4_K one-token bulk kernel with 16-super-block stages (2 slots)
# vs 8 (4 slots) and the branch-free k4_pair (every Q4_K/Q5_K int8 kernel): GpuGemvQ8 + engine tests,
# kernel A/B (GpuGemvQ8.DISABLED_BenchOne), decode rows A/B, then Nsight Compute per-SASS-instruction
# counts of the 16-stage kernel. At most 8 files back (device README).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s15b.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s15b
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*:GpuMmaQ8.*:Engine.*:Tiny*' >"$O/tests.log" 2>&1; echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure$|^\[  FAILED  \]" "$O/tests.log" | head -20
grep -A4 "Failure$" "$O/tests.log" | head -24
stamp bench-one
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1; do
  for st in 8 16; do
    echo -n "stage $st: "
    FATHOM_GEMV_Q4K_STAGE=$st FATHOM_Q8_SHAPE=$s timeout 30 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed"
  done
done | tee "$O/bench_one.log"
stamp bench
b() {  # label, env, args...
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout 100 $B bench "$@" -r 1 -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "^\| [a-z]" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
}
for st in 8 16; do
  b 8b_st$st FATHOM_GEMV_Q4K_STAGE=$st --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
  b 1b_st$st FATHOM_GEMV_Q4K_STAGE=$st --synthetic llama3.2-1b --type Q4_K_M -d 512 -n 128
done
stamp ncu
FATHOM_GEMV_Q4K_STAGE=16 FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 120 ncu --clock-control none -k regex:gemv_q4k_bulk --launch-skip 5 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --section InstructionStats -o /tmp/q4k16 \
  $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$O/ncu_run.txt" 2>&1; echo "ncu rc=$?"
timeout 60 ncu --import /tmp/q4k16.ncu-rep --page source --csv --print-source sass >"$O/q4k16_sass.csv" 2>&1; echo "import rc=$? $(wc -l <"$O/q4k16_sass.csv") lines"
timeout 60 ncu --import /tmp/q4k16.ncu-rep --page details >>"$O/ncu_run.txt" 2>&1
grep -E "Executed Instructions  |Warp Cycles Per Issued|Active Threads" "$O/ncu_run.txt"
stamp done

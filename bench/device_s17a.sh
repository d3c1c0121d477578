#!/usr/bin/env bash
# Session 17, first GPU call: what session 16 left un-run (GpuMmaQ8.* with Bf16BoundWorstCase and
# one_matrix, the ScopedEnv move, the routing refactor), the phase probe of the bf16 variant
# (FATHOM_MMQ_PROBE) at 8 / 16 / 32 tokens and per split count, batch rows, then racecheck on the
# bf16 tests. Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17a.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17a
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | head -8
stamp engine-tests
timeout 200 $T --gtest_filter='Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*:GpuGemmSplit.*:Pdl*' >>"$O/gpu_tests.log" 2>&1; echo "engine tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | tail -8
stamp probe
for sp in 0 1 2 4 8; do
  FATHOM_MMQ_SPLIT=$sp FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BF16_MIN=2 FATHOM_MMQ_BENCH='Q4_K,14336,4096' timeout 60 \
    $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" | sed "s/^/split=$sp /" >>"$O/probe.txt"
done
FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BF16_MIN=2 FATHOM_MMQ_BENCH='Q4_K,4096,14336;Q4_K,4096,4096' timeout 60 \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" >>"$O/probe.txt"
cat "$O/probe.txt"
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp racecheck
timeout 150 compute-sanitizer --tool racecheck --racecheck-report hazard $T --gtest_filter='GpuMmaQ8.Bf16*' >"$O/racecheck.log" 2>&1; echo "racecheck rc=$?"
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|PASSED|FAILED" "$O/racecheck.log" | head -8
stamp done

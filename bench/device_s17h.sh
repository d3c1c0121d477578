#!/usr/bin/env bash
# Session 17, last GPU call: one split-K fence per CTA instead of per thread (finish_tile) and 16 x
# loads in flight in stage_x_bf, from the ncu stalls of device_s17g.sh: mma tests, engine tests,
# kernel probe (device_s17e.sh before: 22.98 / 26.31 / 35.37 us on 14336 x 4096 at 8 / 16 / 32
# tokens, 22.43 / 25.07 / 32.98 on 4096 x 14336), batch rows (1893.6 / 3481.6 / 4576.7 tok/s).
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17h.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17h
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure" "$O/gpu_tests.log" | head -8
stamp probe
FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q6_K,4096,14336' timeout 60 \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" >>"$O/probe.txt"
grep -E "mmq-bench|median" "$O/probe.txt"
stamp rows
echo "== batch" >"$O/bench.md"
timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch rc=$?"
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp engine-tests
timeout 150 $T --gtest_filter='Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*:GpuGemmSplit.*:Pdl*' >>"$O/gpu_tests.log" 2>&1; echo "engine tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | tail -4
stamp done

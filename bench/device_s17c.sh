#!/usr/bin/env bash
# Session 17: the bf16 variant with per-warp tensor-map rings (mma_q8_bf_kernel, after per-row bulk
# copies lost in device_s17b.sh) and the parallel
# split-K reduction: mma tests, probe + kernel times against the CTA-ring kernel
# (FATHOM_MMQ_BF_RING=0, same build), engine tests, batch rows.
# Usage (carry [".devdeps", ".devsrc-L"]): bash bench/device_s17c.sh .devsrc-L/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s17c
stamp mma-tests
timeout 120 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure" "$O/gpu_tests.log" | head -8
stamp probe
for ring in 1 0; do
  FATHOM_MMQ_BF_RING=$ring FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BF16_MIN=2 FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096' timeout 60 \
    $T --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" | sed "s/^/ring=$ring /" >>"$O/probe.txt"
done
grep -E "mmq-bench|median|last CTA" "$O/probe.txt"
stamp engine-tests
timeout 200 $T --gtest_filter='Engine*:Tiny/*:SlicesPerPass.*:GpuPrefill.*:GpuGemmSplit.*:Pdl*' >>"$O/gpu_tests.log" 2>&1; echo "engine tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | tail -4
stamp rows
echo "== batch" >"$O/bench.md"
for ring in 1 0; do
FATHOM_MMQ_BF_RING=$ring timeout 120 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32 -r 1 -q >>"$O/bench.md" 2>&1; echo "batch ring=$ring rc=$?"
done
grep -E "^\| [a-z]" "$O/bench.md" | grep -v "^| model" | grep tg | awk -F'|' '{print $2,$4,$5,$6,$7,$8,$10}'
stamp done

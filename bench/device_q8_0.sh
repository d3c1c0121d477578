#!/usr/bin/env bash
# The one-token Q8_0 kernel (gemv_q80_bulk_kernel, src/cuda/matmul_gemv_q8_0_one.cuh;
# docs/perf/q8_0_one_token.md): GpuGemvQ8.* (incl. Q80OneTokenEveryKernel: both Q8_0 kernels on odd
# shapes, Q/K/V, gate/up, norm), then GpuGemvQ8.DISABLED_BenchOne on the Llama-3-8B Q8_0 shapes with
# the new kernel (FATHOM_GEMV_Q8_0=bulk) and the shared-memory-ring kernel (ring), then the synthetic
# llama3-8b Q8_0 decode with each, then (optional, cut by their timeouts) compute-sanitizer memcheck over
# the new test and Nsight Compute on the new kernel at 14336 x 4096.
# Budget: build ~1-1.5 min, tests <= 2.5, bench-one ~0.5, decode ~1; memcheck <= 1, ncu <= 1.
# Logs straight to $OUT. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_q8_0.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-q80
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*' >"$O/gpu_tests.log" 2>&1; echo "GpuGemvQ8 tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]|^\[       OK \] GpuGemvQ8.Q80" "$O/gpu_tests.log" | head -20
stamp bench-one
for s in Q8_0,14336,4096,1 Q8_0,4096,14336,1 Q8_0,4096,4096,1 Q8_0,1024,4096,1 Q8_0,128256,4096,1; do
  for k in bulk ring; do
    echo -n "$k: "
    FATHOM_GEMV_Q8_0=$k FATHOM_Q8_SHAPE=$s timeout 40 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed (rc ${PIPESTATUS[0]})"
  done
done | tee "$O/bench_one.log"
stamp decode
for k in bulk ring; do
  FATHOM_GEMV_Q8_0=$k timeout 100 $B bench --synthetic llama3-8b --type Q8_0 -d 512 -n 128 -r 1 -q >"$O/bench_$k.md" 2>&1
  echo "decode $k rc=$?"; grep -E "^\| [a-z]" "$O/bench_$k.md" | grep -v "^| model"
done
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q80OneTokenEveryKernel' \
  >"$O/memcheck.txt" 2>&1
echo "memcheck Q80OneTokenEveryKernel rc=$? (124: cut by the timeout)"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
FATHOM_Q8_SHAPE=Q8_0,14336,4096,1 timeout 60 ncu --clock-control none -k regex:gemv_q80 --launch-skip 5 --launch-count 1 $M \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' >"$O/ncu_q80.txt" 2>&1
echo "== ncu gemv_q80_bulk_kernel 14336x4096 rc=$?"
grep -E "gpu__time|dram__|inst_executed|issue_active|warps_active|stalled" "$O/ncu_q80.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active|warps_active/'
stamp done

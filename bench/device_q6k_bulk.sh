#!/usr/bin/env bash
# The one-token Q6_K bulk-copy kernel (gemv_q6k_bulk_kernel, src/cuda/matmul_gemv_q6k_bulk.cuh;
# docs/perf/q6k_bulk.md): GpuGemvQ8.* (incl. Q6kOneTokenEveryKernel: both Q6_K kernels on odd
# shapes, Q/K/V, gate/up, norm, a cols value the bulk kernel rejects), then GpuGemvQ8.DISABLED_BenchOne
# on the five Q6_K shapes with the new kernel (FATHOM_GEMV_Q6K=bulk) and the register-direct kernel
# (direct), then the synthetic llama3-8b Q4_K_M decode with each (ffn_down / attn_v of half the
# layers and the LM head are Q6_K), then (optional, cut by their timeouts) compute-sanitizer memcheck
# over the new test and Nsight Compute on the new kernel at 4096 x 14336.
# Budget: build ~1-1.5 min, tests <= 2.5, bench-one ~0.6, decode ~1; memcheck <= 1, ncu <= 1.
# Logs straight to $OUT. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_q6k_bulk.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-q6b
stamp tests
timeout 150 $T --gtest_filter='GpuGemvQ8.*' >"$O/gpu_tests.log" 2>&1; echo "GpuGemvQ8 tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]|^\[       OK \] GpuGemvQ8.Q6k" "$O/gpu_tests.log" | head -20
stamp bench-one
for s in Q6_K,4096,14336,1 Q6_K,1024,4096,1 Q6_K,4096,4096,1 Q6_K,14336,4096,1 Q6_K,128256,4096,1; do
  for k in bulk direct; do
    echo -n "$k: "
    FATHOM_GEMV_Q6K=$k FATHOM_Q8_SHAPE=$s timeout 40 $T --gtest_also_run_disabled_tests \
      --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' 2>&1 | grep -E "bench-one|FAILED|rror" || echo "$s failed (rc ${PIPESTATUS[0]})"
  done
done | tee "$O/bench_one.log"
stamp decode
for k in bulk direct; do
  FATHOM_GEMV_Q6K=$k timeout 100 $B bench --synthetic llama3-8b --type Q4_K_M -d 512 -n 128 -r 1 -q >"$O/bench_$k.md" 2>&1
  echo "decode $k rc=$?"; grep -E "^\| [a-z]" "$O/bench_$k.md" | grep -v "^| model"
done
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuGemvQ8.Q6kOneTokenEveryKernel' \
  >"$O/memcheck.txt" 2>&1
echo "memcheck Q6kOneTokenEveryKernel rc=$? (124: cut by the timeout)"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp ncu
M='--metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
FATHOM_Q8_SHAPE=Q6_K,4096,14336,1 timeout 60 ncu --clock-control none -k regex:gemv_q6k --launch-skip 5 --launch-count 1 $M \
  $T --gtest_also_run_disabled_tests --gtest_filter='GpuGemvQ8.DISABLED_BenchOne' >"$O/ncu_q6k.txt" 2>&1
echo "== ncu gemv_q6k_bulk_kernel 4096x14336 rc=$?"
grep -E "gpu__time|dram__|inst_executed|issue_active|warps_active|bank_conflicts|stalled" "$O/ncu_q6k.txt" | awk '$NF+0 > 0.05 || /time|dram|inst|issue_active|warps_active|bank/'
stamp done

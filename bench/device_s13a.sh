#!/usr/bin/env bash
# Session 13, first GPU call: every GPU test (GPU-checks the host-side commits of session 12 that
# never ran), then where the Q4_K_M decode step's time goes: the size-dependent streaming-read
# rate (GpuReadBench), single GEMV shapes with weights rotated out of L2 (BenchOne), a CUPTI
# profile of synthetic Llama-3-8B Q4_K_M decode, and Nsight Compute on the register-direct Q4_K
# kernel. Logs straight to $OUT (a call cut short still returns what ran).
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s13a.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s13
stamp tests
timeout 240 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -20
stamp read-bench
timeout 90 $T --gtest_also_run_disabled_tests --gtest_filter='GpuReadBench.*' 2>&1 | grep read-bench | tee "$O/kernels.txt"
stamp shapes
one() { FATHOM_Q8_SHAPE=$1 timeout 30 $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' 2>&1 | grep bench-one; }
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1 Q4_K,6144,4096,1 Q6_K,4096,14336,1 Q6_K,1024,4096,1 Q6_K,128256,4096,1 Q8_0,14336,4096,1 Q8_0,4096,4096,1; do one $s; done | tee -a "$O/kernels.txt"
stamp profile
timeout 90 $B profile --synthetic llama3-8b --type Q4_K_M --prefill 512 -n 32 >"$O/profile_8b.txt" 2>&1; echo "profile rc=$?"
sed -n '/decode/,$p' "$O/profile_8b.txt" | head -70
stamp ncu
FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 150 ncu --clock-control none -k regex:gemv_q4k_direct --launch-skip 5 --launch-count 1 --set full \
  $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$O/ncu_direct.txt" 2>&1
echo "ncu rc=$?"; grep -E "Duration|DRAM Throughput|Memory Throughput|Issue Slots|Warp Cycles Per Issued|Stall|Achieved Occupancy|Theoretical Occupancy|Registers Per|Eligible Warps|No Eligible|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Elapsed Cycles|Waves Per SM|Grid Size" "$O/ncu_direct.txt" | head -40
stamp done

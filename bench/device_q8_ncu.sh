#!/usr/bin/env bash
# One GPU call: where does the int8-activation GEMV spend its time? Builds the given source
# tarball, times single shapes (tests/gpu/test_gemv_q8.cpp DISABLED_BenchOne), reads Nsight
# Compute counters for the Q4_K 14336x4096 case and dumps the kernel's SASS.
# Usage (device tool, carry [".devdeps", ".devsrc"]): bash bench/device_q8_ncu.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
one() { FATHOM_Q8_SHAPE=$1 $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' 2>&1 | grep bench-one; }
stamp shapes
for s in Q4_K,14336,4096,1 Q4_K,4096,14336,1 Q4_K,4096,4096,1 Q4_K,1024,4096,1 Q6_K,4096,14336,1 Q6_K,128256,4096,1 Q8_0,14336,4096,1 Q4_0,14336,4096,1; do one $s; done
stamp ncu
FATHOM_Q8_SHAPE=Q4_K,14336,4096,1 timeout 200 ncu --clock-control none -k regex:gemv_q8 --launch-skip 5 --launch-count 1 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section InstructionStats \
  $T --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*' >"$OUT/ncu_q4k.txt" 2>&1
echo "ncu rc=$?"; grep -E "Duration|Throughput|Issue Slots|Issued Ipc|Executed Ipc|Warp Cycles Per Issued|Stall|Achieved Occupancy|Theoretical Occupancy|Registers|Shared Memory|Eligible|No Eligible|One or More|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|DRAM" "$OUT/ncu_q4k.txt" | head -60
stamp sass
lib=$(find build-dev -name 'libfathom*.a' | head -1)
cuobjdump -sass "$lib" 2>/dev/null | awk '/Function : .*gemv_q8_kernelILNS_8GgmlTypeE12ELi1E/{p=1} p&&/Function : /&&!/GgmlTypeE12ELi1E/{p=0} p' >"$OUT/sass_q4k_nb1.txt"
wc -l "$OUT/sass_q4k_nb1.txt"
stamp done

#!/usr/bin/env bash
# Session 15, last GPU call: the mma_q8 tests alone first (helper commits dd84eb8..dcf2978, never
# GPU-run; dd84eb8/23efb9b faulted in device_s15c.sh, fixed in dcf2978), then every other GPU test,
# every issue-6/8 row, the A/Bs (FATHOM_MMQ_Q4K_CVT=i2f at batch 8, FATHOM_MMQ_SHARE=0 at pp4096),
# the mma_q8 kernel bench, memcheck over the mma_q8 and shared-workspace tests.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s15_final.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s15f
stamp mma-tests
timeout 60 $T --gtest_filter='GpuMmaQ8.*' >"$O/gpu_tests.log" 2>&1; echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception" "$O/gpu_tests.log" | head -12
stamp tests
timeout 200 $T --gtest_filter='-GpuMmaQ8.*' >>"$O/gpu_tests.log" 2>&1; echo "other gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|exception|shared vs separate" "$O/gpu_tests.log" | tail -14
stamp bench
b() {  # label, env, args...
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout 100 $B bench "$@" -r 1 -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "^\| [a-z]|^memory|rror" | grep -v "^| model" | awk -F'|' 'NF>2{print $2,$4,$5,$6,$7,$8,$10} NF<=2{print}'
}
b 8b_tg X=1 --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128
b 1b_tg X=1 --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
b 8b_d32k X=1 --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
b 8b_batch X=1 --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
b 8b_b8_i2f FATHOM_MMQ_Q4K_CVT=i2f --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16
b 8b_pp X=1 --synthetic llama3-8b --type F16,Q4_K_M,Q8_0 -p 512,4096 -n 2
b 8b_pp_share0 FATHOM_MMQ_SHARE=0 --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2
stamp mma-bench
for cvt in fadd i2f; do
  FATHOM_MMQ_Q4K_CVT=$cvt FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q6_K,4096,14336' timeout 40 $T \
    --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep "mmq-bench" | sed "s/^/$cvt /"
done | tee "$O/mma_kbench.log"
stamp memcheck
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 $T --gtest_filter='GpuMmaQ8.EveryTypeAndTokenCount:GpuMmaQ8.FusedGateUp*:EngineWorkspace.*' >"$O/memcheck.txt" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$O/memcheck.txt" | tail -3
stamp done

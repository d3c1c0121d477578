#!/usr/bin/env bash
# Prefill GEMM side of issue #8 (dequant kernel, chunk size, FFN slices, bench pp32768, prefill
# kernel list), one GPU call. Usage (carry [".devdeps", ".devsrc-pre"]):
#   bash bench/device_pre.sh .devsrc-pre/head.tgz
# Steps, each under `timeout`: build; the GPU tests of the GEMM and engine paths it touches; the
# prefill GEMM benchmark (tests/gpu/test_prefill_bench.cu); fathom bench pp512/pp4096 for
# llama3-8b F16, Q4_K_M, Q8_0; pp4096 Q4_K_M at the old 512-token chunk (A/B); pp32768 Q4_K_M
# with its peak memory; the kernel list of an F16 pp512 prefill (fathom profile's prefill section).
# The engine tests, the model bench and the profile run with the attention kernels the earlier
# baselines had (FATHOM_ATTN_PREFILL=scalar, FATHOM_ATTN_DECODE=old), so the GEMM-side change is
# measured alone; the pp32768 row is taken with both prefill attention kernels.
# (Session 12: the old decode kernel was deleted, so FATHOM_ATTN_DECODE=old below is ignored now;
# this script records the runs it made.)
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
export FATHOM_ATTN_DECODE=old
OLDATT="env FATHOM_ATTN_PREFILL=scalar"
stamp tests
F='GpuPrefill.*:GpuMatmul.TiledGemm*:GpuMatmul.Cublas*:GpuMatmul.Dispatch*:GemmPlan*:Tiny/EngineVsReference*:Engine.ChunkedPrefill*:Engine.MemoryBreakdown*:Engine.BatchedDecode*'
$OLDATT timeout 110 $T --gtest_filter="$F" >"$OUT/tests.log" 2>&1; echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|Failure|error" "$OUT/tests.log" | head -20
stamp gemm-bench
timeout 45 $T --gtest_also_run_disabled_tests --gtest_filter='GpuPrefill.DISABLED_Bench*' >"$OUT/gemm_bench.log" 2>&1
echo "gemm bench rc=$?"; grep '\[prefill\]' "$OUT/gemm_bench.log"
stamp fathom-bench
$OLDATT timeout 110 $B bench --synthetic llama3-8b --type F16,Q4_K_M,Q8_0 -p 512,4096 -n 1 -r 2 -q --json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
echo "bench rc=$?"; grep -E "^\||^memory|rror" "$OUT/bench.txt"
stamp ab-ubatch512
$OLDATT timeout 40 $B bench --synthetic llama3-8b --type Q4_K_M -p 4096 -n 1 -r 2 -q --ubatch 512 >"$OUT/bench_ub512.txt" 2>&1
echo "ub512 rc=$?"; grep -E "pp4096|^memory|rror" "$OUT/bench_ub512.txt"
stamp pp32768-tensor-core-attention
timeout 45 $B bench --synthetic llama3-8b --type Q4_K_M -p 32768 -n 1 -r 1 --warmup 0 -q >"$OUT/bench_32k.txt" 2>&1
rc32=$?; echo "32k rc=$rc32"; grep -E "pp32768|^memory|rror" "$OUT/bench_32k.txt"
if [ "$rc32" != 0 ]; then
  stamp pp32768-scalar-attention
  $OLDATT timeout 50 $B bench --synthetic llama3-8b --type Q4_K_M -p 32768 -n 1 -r 1 --warmup 0 -q >"$OUT/bench_32k_scalar.txt" 2>&1
  echo "32k scalar rc=$?"; grep -E "pp32768|^memory|rror" "$OUT/bench_32k_scalar.txt"
fi
stamp profile
$OLDATT timeout 40 $B profile --synthetic llama3-8b --type F16 --prefill 512 -n 1 -v --json "$OUT/profile_f16.json" >"$OUT/profile_f16.txt" 2>&1
echo "profile rc=$?"; grep -E "^fathom: (prefill|CUDA)|  prefill " "$OUT/profile_f16.txt"
grep -A45 '^  prefill (NVTX' "$OUT/profile_f16.txt" | tee "$OUT/prefill_kernels.txt" | cut -c1-200
stamp done

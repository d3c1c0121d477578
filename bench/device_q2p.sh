#!/usr/bin/env bash
# One GPU call for the split-operand tiled GEMM (src/cuda/matmul_gemm.cu gemm_tile_kernel: x and
# w as bf16 hi + lo, three MMAs; FATHOM_GEMM_TILE_SPLIT=0 = the old single-bf16 kernel):
#  1. GpuGemmSplit (the split's bounds on every type), GpuMatmul, the engine test;
#  2. the engine's step-0 error of the quantized tiny models ([split] lines) with and without the
#     split, and with FATHOM_MMQ=0 (Q4_K/Q8_0 40-token matmuls back on the tiled kernel);
#  3. prefill speed A/B on gemma3-270m (small model: every prefill matmul on the tiled kernel);
#  4. racecheck of the split kernel (its fp32 epilogue tile reuses the operand tiles' memory).
# Usage (carry [".devdeps", ".devsrc-q2p"]): bash bench/device_q2p.sh .devsrc-q2p/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
summary() { grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|worst element|rc=|^\[split\]|relative l2" "$1" | head -${2:-40}; }
stamp tests
timeout 200 $T --gtest_filter='GpuGemmSplit.*:GpuMatmul.*:Tiny/EngineVsReference.*' >"$OUT/t.log" 2>&1
echo "rc=$?" >>"$OUT/t.log"; summary "$OUT/t.log" 50
for cfg in "nosplit:0:" "mmq0:1:0" "mmq0_nosplit:0:0"; do
  name=${cfg%%:*}; rest=${cfg#*:}; sp=${rest%%:*}; mq=${rest#*:}
  stamp "$name"
  env FATHOM_GEMM_TILE_SPLIT=$sp ${mq:+FATHOM_MMQ=$mq} timeout 60 $T \
    --gtest_filter='GpuGemmSplit.EnginePrefillLogitError' >"$OUT/e_$name.log" 2>&1
  echo "rc=$?" >>"$OUT/e_$name.log"; grep -E "^\[split\]|rc=" "$OUT/e_$name.log"
done
stamp prefill-ab
for sp in 1 0; do
  FATHOM_GEMM_TILE_SPLIT=$sp timeout 120 $B bench --synthetic gemma3-270m --type Q4_K_M,Q8_0 -p 512 -n 1 -r 3 -q \
    >"$OUT/pp_split$sp.md" 2>&1
  echo "split=$sp"; grep -E "pp512|rror" "$OUT/pp_split$sp.md"
done
stamp racecheck
timeout 150 compute-sanitizer --tool racecheck $T --gtest_filter='GpuGemmSplit.TiledGemmCarriesSixteenBits' \
  >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|PASSED|FAILED" "$OUT/racecheck.log" | head -6
stamp done

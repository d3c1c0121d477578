#!/usr/bin/env bash
# One GPU call for the decode-attention split kernel (src/cuda/attention_decode.cu, issue #6):
# build the source tarball, its tests, the older decode tests and engine tests on it, the same
# with FATHOM_ATTN_DECODE=old, the bench (both kernels), memcheck and racecheck on small cases.
# Usage (carry [".devdeps", ".devsrc-dattn"]): bash bench/device_dattn.sh .devsrc-dattn/head.tgz
# (Session 12: the old decode kernel was deleted, so FATHOM_ATTN_DECODE=old below is ignored now;
# this script records the runs it made.)
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
NEW='GpuAttentionDecode.*'
OLDT='GpuAttention.Decode*'
ENG='Engine.GreedyOnDeviceMatchesReference:Engine.BatchedDecodeMatchesSingleSequences:Engine.ChunkedPrefillMatchesWholePrefill:Tiny/EngineVsReference.*:Tiny/PdlBitExact.*'
summary() { grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|worst element|rc=" "$1" | head -${2:-12}; }
stamp tests-new
timeout 240 $T --gtest_filter="$NEW" >"$OUT/t_new.log" 2>&1; echo "rc=$?" >>"$OUT/t_new.log"; summary "$OUT/t_new.log" 20
stamp tests-old-decode-and-engine
timeout 240 $T --gtest_filter="$OLDT:$ENG" >"$OUT/t_eng.log" 2>&1; echo "rc=$?" >>"$OUT/t_eng.log"; summary "$OUT/t_eng.log"
stamp tests-with-old-kernel
FATHOM_ATTN_DECODE=old timeout 120 $T --gtest_filter="$OLDT:Tiny/PdlBitExact.*" >"$OUT/t_oldk.log" 2>&1; echo "rc=$?" >>"$OUT/t_oldk.log"; summary "$OUT/t_oldk.log"
stamp bench
timeout 180 $T --gtest_also_run_disabled_tests --gtest_filter='GpuAttentionDecode.DISABLED_Bench' >"$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^decode|copy" "$OUT/bench.log"
stamp depth32k
for v in new old; do
  if [ $v = old ]; then export FATHOM_ATTN_DECODE=old; else unset FATHOM_ATTN_DECODE; fi
  timeout 90 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -d 32768 -r 1 -q >"$OUT/d32k_$v.md" 2>&1; echo "depth32k $v"; grep -E "tg32|error" "$OUT/d32k_$v.md"
  timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -b 8 -d 4096 -r 1 -q >"$OUT/b8d4k_$v.md" 2>&1; echo "b8 d4096 $v"; grep -E "tg64|error" "$OUT/b8d4k_$v.md"
done
unset FATHOM_ATTN_DECODE
stamp memcheck
timeout 200 compute-sanitizer --tool memcheck $T --gtest_filter='GpuAttentionDecode.ContextsBlockSizesGqa:GpuAttentionDecode.HeadGroups:GpuAttentionDecode.ManySequences:GpuAttentionDecode.BoundAboveContexts' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -6
stamp racecheck
timeout 120 compute-sanitizer --tool racecheck $T --gtest_filter='GpuAttentionDecode.HeadGroups' >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|PASSED|FAILED" "$OUT/racecheck.log" | head -6
stamp done

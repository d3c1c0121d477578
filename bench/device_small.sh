#!/usr/bin/env bash
# One GPU call (<= 200 s) for the small decode kernels (docs/perf/small_decode_kernels.md): build the
# source tarball; GPU tests of rope / rms_norm / attention / engine; then the batch-1 decode step
# of synthetic Llama-3-8B Q4_K_M A/B: default kernels vs FATHOM_SMALL_OLD=1 (the one-block rope and
# rms_norm kernels, decode-attention minimum split 128), alternated twice at depth 512, and once
# each at depth 32768 if the time is left. Every step runs under a timeout cut to what is left of
# the 195 s. FATHOM_SMALL_OLD existed in commit 5b2d625 only (measured there, then deleted with the
# old rope kernel): on later commits the "old" runs repeat the new ones. Put new tests first in F
# next time: the 60 s ran out in GpuAttention.PrefillVariants before GpuOps.* and Tiny/* ran.
# Usage (carry [".devdeps", ".devsrc-small"]):
#   bash bench/device_small.sh .devsrc-small/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
left() { echo $(( 195 - ($(date +%s) - t0) )); }
cap() { local l; l=$(left); (( l < $1 )) && echo $(( l > 1 ? l : 1 )) || echo "$1"; }
F='*Rope*:*Norm*:GpuAttention*:Tiny/EngineVsReference*:Tiny/PdlBitExact*:Engine.BatchedDecode*:Engine.GreedyOnDevice*:Engine.ChunkedPrefill*'
stamp "tests (left $(left) s)"
timeout "$(cap 60)" $T --gtest_filter="$F" >"$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|worst element|exception|tests ran" "$OUT/tests.log" | head -30
bench() {  # label, depth, steps, env...
  local label=$1 d=$2 n=$3; shift 3
  local l; l=$(left)
  if (( l < 12 )); then echo "== $label skipped (left $l s)"; return; fi
  env "$@" timeout "$(cap 40)" $B bench --synthetic llama3-8b --type Q4_K_M -d "$d" -n "$n" -r 1 -q >"$OUT/bench_$label.md" 2>&1
  echo "== $label rc=$? [$(( $(date +%s) - t0 ))s]"; grep -E "tg$n|rror" "$OUT/bench_$label.md" | head -3
}
stamp "decode A/B (left $(left) s)"
bench d512_new 512 64
bench d512_old 512 64 FATHOM_SMALL_OLD=1
bench d512_new2 512 64
bench d512_old2 512 64 FATHOM_SMALL_OLD=1
bench d32k_new 32768 32
bench d32k_old 32768 32 FATHOM_SMALL_OLD=1
stamp done

#!/usr/bin/env bash
# Session 13, A/B after reverting the last-block attention merge: engine tests and decode rows
# with the pair (default) and bulk-copy (FATHOM_GEMV_BULK=1) Q4_K kernels.
# Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_s13g.sh .devsrc-X/head.tgz
# (Session-13 record: FATHOM_GEMV_BULK=1 selected the bulk-copy Q4_K kernel at the commits this ran
# at; since 9387aa2 the switch is FATHOM_GEMV_Q4K=bulk|pair and FATHOM_GEMV_BULK does nothing.)
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-s13
stamp tests
for e in X=1 FATHOM_GEMV_BULK=1; do
  env $e timeout 60 $T --gtest_filter='Tiny/EngineVsReference*:Engine.*:GpuAttentionDecode.*-Engine.RealGemma3*' 2>&1 | grep -E "^\[  (PASSED|FAILED) " | sed "s/^/$e: /"
done
b() {  # label, args...
  local label=$1; shift
  echo "== $label" >>"$O/bench_all.md"
  timeout 90 $B bench "$@" -r 2 -q >>"$O/bench_all.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench_all.md" | grep -E "^\| [a-z]" | grep -v "^| model" | grep -v pp512
}
stamp bench
for e in X=1 FATHOM_GEMV_BULK=1; do
  export $e
  b "8b $e" --synthetic llama3-8b --type Q4_K_M -d 512 -n 128
  b "1b $e" --synthetic llama3.2-1b --type Q4_K_M -d 512 -n 128
  b "32k $e" --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
  b "b8 $e" --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8
  unset ${e%%=*}
done
stamp done

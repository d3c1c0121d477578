#!/usr/bin/env bash
# Decode-only A/B for the tensor-core small-batch matmul routing (src/cuda/engine.cpp mmq_route):
# synthetic Llama-3-8B Q4_K_M at the given batches with the path on (default routing) and off
# (FATHOM_MMQ=0), then batch 32 with the default routing. Usage (carry [".devdeps", ".devsrc-mmq"]):
#   bash bench/device_mmq_decode.sh .devsrc-mmq/head.tgz [batches (default 12,16)]
source "$(dirname "$0")/device_lib.sh"
device_begin "$1"
bench() {  # label, batches, env...
  local label=$1 b=$2; shift 2
  env "$@" timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -r 2 -q -b "$b" >"$OUT/bench_$label.md" 2>&1
  echo "== $label rc=$?"; grep -E "tg64" "$OUT/bench_$label.md" | awk -F'|' '{print $2, $4, $6, $7, $8, $9}'
}
stamp decode
bench on "${2:-12,16}" FATHOM_MMQ=1
bench off "${2:-12,16}" FATHOM_MMQ=0
bench b32_default 32 FATHOM_MMQ=1
stamp done

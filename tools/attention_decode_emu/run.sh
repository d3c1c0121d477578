#!/usr/bin/env bash
# Runs the decode-attention kernels of src/cuda/attention_decode.cu on the CPU, one host thread per
# lane, against fathom::cpu::attention (no GPU needed; minutes). Checks the index logic -- page
# lookups, swizzle, fragment assembly from ldmatrix, hi/lo splits, masks, splits and merge -- under
# the PTX fragment layouts as emu.cpp writes them; not timing, not the asynchrony of cp.async.
# Usage: tools/attention_decode_emu/run.sh <build dir with libfathom.a> [case group 1|2|3|4 (4: fused RoPE), 0 = all]
# EMU_FTZ=1 flushes fp16 subnormal mma inputs (the hi/lo splits must not depend on them).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?build dir}
work=$(mktemp -d)
python3 "$root/tools/attention_decode_emu/gen.py" "$root" "$work/emu_kernel.inc"
g++ -std=c++17 -O2 -pthread -I"$root/src" -I"$root/include" -I/usr/local/cuda/include -I"$work" \
  "$root/tools/attention_decode_emu/emu.cpp" "$build/libfathom.a" -o "$work/emu"
"$work/emu" "${2:-0}"

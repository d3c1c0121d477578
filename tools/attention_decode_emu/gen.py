#!/usr/bin/env python3
# Turns src/cuda/attention_decode.cu into host-compilable code for emu.cpp: the ptx.cuh include
# (inline-PTX helpers: cp.async, ldmatrix, smem_u32) and the mma.sync helper are cut (emu.cpp
# defines emulated ones), and so is the host part.
# Usage: gen.py <repo root> <output .inc>
import sys

root, out = sys.argv[1], sys.argv[2]
s = open(root + '/src/cuda/attention_decode.cu').read()
inc = '#include "cuda/ptx.cuh"\n'
assert inc in s
s = s.replace(inc, '')
a = s.index('__device__ __forceinline__ void mma16816')
b = s.index('// x0, x1 -> fp16 pairs')
s = s[:a] + s[b:]
h = s.index('// ---- host')
s = s[:h] + '}  // namespace\n}  // namespace fathom::cuda\n'
open(out, 'w').write(s)

#!/usr/bin/env python3
# Turns src/cuda/attention_decode.cu into host-compilable code for emu.cpp: the ptx.cuh include
# (inline-PTX helpers: cp.async, ldmatrix, smem_u32) and the mma.sync helper are cut (emu.cpp
# defines emulated ones), the host part is cut, the dynamic shared array of the merge kernel
# becomes emu_dyn_smem_f().
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
dyn = 'extern __shared__ float merge_w[];'
assert dyn in s
s = s.replace(dyn, 'float* merge_w = emu_dyn_smem_f();')
open(out, 'w').write(s)

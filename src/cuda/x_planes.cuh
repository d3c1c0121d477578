// Activation quantization shared by the int8 decode GEMV (matmul_gemv_q8.cu) and the tensor-core
// small-batch matmul (matmul_mma_q8_kernel.cuh): x is carried as two int8 planes per 32-element
// block, x ~= u (254 q1 + q2) with u = max|x| / (127 * 254), so |x - u (254 q1 + q2)| <= u / 2 =
// max|x| / 64516 -- finer than bf16 (one plane measured 1.29e-2 relative logit error on a tiny
// random Llama, over the engine tests' 1e-2). Both kernels' error bounds (and the tests'
// tolerances, tests/gpu/test_q8_bound.h) assume exactly this rounding.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fathom::cuda {

constexpr int kXPlaneScale = 254;  // x = u (254 q1 + q2)

// One thread's 4 consecutive elements of a 32-element block, quantized: the 8 threads of the
// block must be 8 consecutive lanes starting at a multiple of 8, all of the warp active (the max
// and the sum go through 3 xor shuffles). p1 / p2: the 4 codes of plane 1 / 2 as int8 bytes
// (little-endian: element 0 in the low byte); u: the block's unit; sum: the block's exact fp32
// sum of x (the K-quant min terms and Q2_K / Q4_1 offsets use it).
struct XQuad {
  uint32_t p1, p2;
  float u, sum;
};

__device__ __forceinline__ XQuad quantize_x4(float4 v) {
  // Rounding by the 1.5 * 2^23 constant: for |t| <= 2^22, t + 1.5 * 2^23 rounds t to the nearest
  // integer (ties to even) in one full-rate FMA instead of a quarter-rate F2I, and that integer is
  // the float's low byte (two's complement) when |t| <= 127.
  constexpr float kMagic = 12582912.0f;
  float am = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
  float sm = (v.x + v.y) + (v.z + v.w);
#pragma unroll
  for (int off = 1; off < 8; off <<= 1) {
    am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, off));
    sm += __shfl_xor_sync(0xffffffffu, sm, off);
  }
  const float d1 = am * (1.0f / 127.0f);
  const float u1 = d1 * (1.0f / float(kXPlaneScale));
  const float inv1 = am > 0.0f ? 127.0f / am : 0.0f;
  const float inv2 = am > 0.0f ? 1.0f / u1 : 0.0f;
  const float vv[4] = {v.x, v.y, v.z, v.w};
  uint32_t b1[4], b2[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float f1 = fmaf(vv[e], inv1, kMagic);  // kMagic + rn(x / d1), |.| <= 127
    const float q1 = f1 - kMagic;
    const float r = fmaf(-q1, d1, vv[e]);        // |r| <= d1 / 2 (+ the rounding of inv1)
    // kMagic + rn(r / u1): |r / u1| <= 127 up to rounding; clamped so that no rounding path can
    // produce 128, which would wrap to -128 in the byte.
    const float f2 = fminf(fmaxf(fmaf(r, inv2, kMagic), kMagic - 127.0f), kMagic + 127.0f);
    b1[e] = __float_as_uint(f1);
    b2[e] = __float_as_uint(f2);
  }
  XQuad o;
  o.p1 = __byte_perm(__byte_perm(b1[0], b1[1], 0x0040), __byte_perm(b1[2], b1[3], 0x0040), 0x5410);
  o.p2 = __byte_perm(__byte_perm(b2[0], b2[1], 0x0040), __byte_perm(b2[2], b2[3], 0x0040), 0x5410);
  o.u = u1;
  o.sum = sm;
  return o;
}

}  // namespace fathom::cuda

// RoPE arithmetic shared by the stand-alone rope kernel (rope.cu) and the decode attention that
// fuses it (attention_decode.cu), so both produce the same bits: the angle of pair i at position
// pos in double (theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i]; a float
// theta is off by ~1e-2 rad at position 1e5) reduced to float cos/sin, and the rotation with
// explicit roundings (no contraction choice left to the compiler).
#pragma once

#include <cuda_runtime.h>

#include "cuda/ops.cuh"

namespace fathom::cuda {

__device__ __forceinline__ void rope_cos_sin(const RopeKvParams& p, double pos, int i, float& c, float& s) {
  const double inv_freq = exp2(-double(2 * i) / double(p.n_rot) * log2(double(p.freq_base)));
  const double ff = p.freq_factors ? double(p.freq_factors[i]) : 1.0;
  const double theta = double(p.freq_scale) * (pos * inv_freq / ff);
  double sd, cd;
  sincos(theta, &sd, &cd);
  c = float(cd);
  s = float(sd);
}

// (x0, x1) rotated by the angle with cosine c and sine s: (x0 c - x1 s, x0 s + x1 c), rounded
// as the rope kernel compiled before this header existed (nvcc's contraction of
// x0 * c - x1 * s and x0 * s + x1 * c), so its outputs did not move.
__device__ __forceinline__ float rope_first(float x0, float x1, float c, float s) {
  return __fmaf_rn(x0, c, -__fmul_rn(x1, s));
}
__device__ __forceinline__ float rope_second(float x0, float x1, float c, float s) {
  return __fmaf_rn(x1, c, __fmul_rn(x0, s));
}

// Element e of a head row after the rotation (row: the un-rotated fp32 row, x = row[e]); cos/sin of
// pair i at cs[i], sn[i]. NORM pairs (2i, 2i + 1), NEOX (i, i + n_rot / 2); e >= n_rot unchanged.
__device__ __forceinline__ float rope_element(const RopeKvParams& p, const float* row, int e, float x,
                                              const float* cs, const float* sn) {
  if (e >= p.n_rot) return x;
  const int half = p.n_rot / 2;
  int i, partner;
  bool first;
  if (p.type == RopeType::NORM) {
    i = e >> 1;
    first = (e & 1) == 0;
    partner = e ^ 1;
  } else {
    first = e < half;
    i = first ? e : e - half;
    partner = first ? e + half : e - half;
  }
  const float xp = row[partner];
  return first ? rope_first(x, xp, cs[i], sn[i]) : rope_second(xp, x, cs[i], sn[i]);
}

}  // namespace fathom::cuda

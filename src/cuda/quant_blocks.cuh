// Device-side dequantization of GGUF blocks, shared by the embedding gather, the GEMV and the
// tiled GEMM. The unit of work is a "unit" of 32 consecutive elements of a row: a whole block of
// the legacy types (Q4_0 .. Q8_0), a 32-element sub-block of a K-quant super-block, or 32 plain
// F32/F16/BF16 values. dequant_unit<T>(row, u, v) writes elements [32u, 32u + 32) of the row to
// v[0..31] in registers (fully unrolled, so v stays in registers).
//
// Byte layouts (docs/conventions.md, src/quant/blocks.h). Loads use the widest access the block
// alignment allows when rows start 16-byte aligned (cudaMalloc + rows of whole blocks):
//   Q4_0 18 B (2-aligned)  Q4_1 20 B (4)  Q5_0 22 B (2)  Q5_1 24 B (8)  Q8_0 34 B (2)
//   Q2_K 84 B (4)  Q3_K 110 B (2)  Q4_K 144 B (16)  Q5_K 176 B (16)  Q6_K 210 B (2)
// dequant_unit computes each element with the CPU decoder's fp32 operations in the same order
// (src/quant/q_legacy.cpp, q_k.cpp); where those are a product then a sum (d * q - m) nvcc may
// contract them into one FMA (a few ulps), except in Q2_K, which spells the two roundings out
// (__fmul_rn, __fsub_rn) and so matches the CPU bit for bit, as Q3_K (two products) does.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "fathom/ggml_type.h"

namespace fathom::cuda {

constexpr int kUnit = 32;  // elements per dequantization unit

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t*>(p)));
}

// 16 bytes from a 2-byte aligned address, as four little-endian words.
__device__ __forceinline__ void load16_a2(const uint8_t* p, uint32_t w[4]) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = uint32_t(h[2 * i]) | (uint32_t(h[2 * i + 1]) << 16);
}
__device__ __forceinline__ void load16_a4(const uint8_t* p, uint32_t w[4]) {
  const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = q[i];
}
__device__ __forceinline__ void load16_a16(const uint8_t* p, uint32_t w[4]) {
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  w[0] = q.x; w[1] = q.y; w[2] = q.z; w[3] = q.w;
}
__device__ __forceinline__ uint32_t byte_of(const uint32_t w[4], int j) {
  return (w[j >> 2] >> (8 * (j & 3))) & 0xFFu;
}

// Q4_K / Q5_K packed 6-bit scale and min of sub-block j (ggml get_scale_min_k4).
__device__ __forceinline__ void k4_scale_min(const uint8_t* s, int j, float& sc, float& m) {
  if (j < 4) {
    sc = float(s[j] & 63);
    m = float(s[j + 4] & 63);
  } else {
    sc = float((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    m = float((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

template <GgmlType T>
struct QTraits;
template <> struct QTraits<GgmlType::F32>  { static constexpr int unit_bytes = 128; };
template <> struct QTraits<GgmlType::F16>  { static constexpr int unit_bytes = 64; };
template <> struct QTraits<GgmlType::BF16> { static constexpr int unit_bytes = 64; };
template <> struct QTraits<GgmlType::Q4_0> { static constexpr int unit_bytes = 18; };
template <> struct QTraits<GgmlType::Q4_1> { static constexpr int unit_bytes = 20; };
template <> struct QTraits<GgmlType::Q5_0> { static constexpr int unit_bytes = 22; };
template <> struct QTraits<GgmlType::Q5_1> { static constexpr int unit_bytes = 24; };
template <> struct QTraits<GgmlType::Q8_0> { static constexpr int unit_bytes = 34; };
// K-quants: bytes per 32-element unit averaged over the 256-element super-block.
template <> struct QTraits<GgmlType::Q2_K> { static constexpr int sb_bytes = 84; };
template <> struct QTraits<GgmlType::Q3_K> { static constexpr int sb_bytes = 110; };
template <> struct QTraits<GgmlType::Q4_K> { static constexpr int sb_bytes = 144; };
template <> struct QTraits<GgmlType::Q5_K> { static constexpr int sb_bytes = 176; };
template <> struct QTraits<GgmlType::Q6_K> { static constexpr int sb_bytes = 210; };

template <GgmlType T>
__device__ __forceinline__ void dequant_unit(const uint8_t* row, int64_t u, float v[32]);

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::F32>(const uint8_t* row, int64_t u,
                                                            float v[32]) {
  const float4* p = reinterpret_cast<const float4*>(row + u * 128);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float4 f = p[i];
    v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::F16>(const uint8_t* row, int64_t u,
                                                            float v[32]) {
  const uint4* p = reinterpret_cast<const uint4*>(row + u * 64);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint4 q = p[i];
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
      v[8 * i + 2 * j] = f.x; v[8 * i + 2 * j + 1] = f.y;
    }
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::BF16>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint4* p = reinterpret_cast<const uint4*>(row + u * 64);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint4 q = p[i];
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
      v[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
    }
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q4_0>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + u * 18;
  const float d = half_at(b);
  uint32_t w[4];
  load16_a2(b + 2, w);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t q = byte_of(w, j);
    v[j] = d * (float(q & 0xF) - 8.0f);
    v[j + 16] = d * (float(q >> 4) - 8.0f);
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q4_1>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + u * 20;
  const float d = half_at(b), m = half_at(b + 2);
  uint32_t w[4];
  load16_a4(b + 4, w);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t q = byte_of(w, j);
    v[j] = d * float(q & 0xF) + m;
    v[j + 16] = d * float(q >> 4) + m;
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q5_0>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + u * 22;
  const float d = half_at(b);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(b + 2);
  const uint32_t qh = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
  uint32_t w[4];
  load16_a2(b + 6, w);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t q = byte_of(w, j);
    const uint32_t x0 = (q & 0xF) | (((qh >> j) << 4) & 0x10);
    const uint32_t x1 = (q >> 4) | ((qh >> (j + 12)) & 0x10);
    v[j] = d * (float(x0) - 16.0f);
    v[j + 16] = d * (float(x1) - 16.0f);
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q5_1>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + u * 24;
  const float d = half_at(b), m = half_at(b + 2);
  const uint32_t qh = *reinterpret_cast<const uint32_t*>(b + 4);
  uint32_t w[4];
  load16_a4(b + 8, w);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t q = byte_of(w, j);
    const uint32_t x0 = (q & 0xF) | (((qh >> j) << 4) & 0x10);
    const uint32_t x1 = (q >> 4) | ((qh >> (j + 12)) & 0x10);
    v[j] = d * float(x0) + m;
    v[j + 16] = d * float(x1) + m;
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q8_0>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + u * 34;
  const float d = half_at(b);
  uint32_t w[8];
  load16_a2(b + 2, w);
  load16_a2(b + 18, w + 4);
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int8_t q = int8_t((w[j >> 2] >> (8 * (j & 3))) & 0xFF);
    v[j] = d * float(q);
  }
}

// Q2_K / Q3_K: unit j = u % 8 of a super-block is elements 32 j .. 32 j + 31, i.e. 128-element
// half h = j / 4 and bit pair p = j % 4: element 32 j + l is bits 2p..2p+1 of qs[32 h + l], and
// (Q3_K) its third bit is bit j of hmask[l]. The unit spans sub-blocks 2j (l < 16) and 2j + 1.
// Q2_K: x = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[sub-block], q in [0, 3].
template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q2_K>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + (u >> 3) * 84;
  const int j = int(u & 7);
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  const uint32_t sc = *reinterpret_cast<const uint16_t*>(b + 2 * j);  // sub-blocks 2j, 2j + 1
  const float dl0 = d * float(sc & 0xF), ml0 = dmin * float((sc >> 4) & 0xF);
  const float dl1 = d * float((sc >> 8) & 0xF), ml1 = dmin * float(sc >> 12);
  const int shift = 2 * (j & 3);
  uint32_t w[8];
  load16_a4(b + 16 + 32 * (j >> 2), w);
  load16_a4(b + 32 + 32 * (j >> 2), w + 4);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const uint32_t q = (w[l >> 2] >> (8 * (l & 3) + shift)) & 3u;
    v[l] = __fsub_rn(__fmul_rn(l < 16 ? dl0 : dl1, float(q)), l < 16 ? ml0 : ml1);
  }
}

// Q3_K 6-bit signed scales of sub-blocks 2j and 2j + 1 (q_k.cpp q3k_scale): scale s keeps its
// low 4 bits in byte s % 8 of scales[] (low nibble for s < 8, high for s >= 8) and its top 2 bits
// in byte 8 + s % 4 at bit 2 (s / 4); value - 32. For s = 2j = 8h + 2p: bytes 2p, 2p + 1 (nibble
// h) and 8 + 2 (p % 2), +1 (bits 2 (2h + p / 2)).
__device__ __forceinline__ void q3k_scale_pair(const uint8_t* scales, int j, int& s0, int& s1) {
  const int h = j >> 2, p = j & 3;
  const uint32_t lo = *reinterpret_cast<const uint16_t*>(scales + 2 * p);
  const uint32_t hi = *reinterpret_cast<const uint16_t*>(scales + 8 + 2 * (p & 1));
  const int hs = 2 * (2 * h + (p >> 1));
  s0 = int(((lo >> (4 * h)) & 0xFu) | (((hi >> hs) & 3u) << 4)) - 32;
  s1 = int(((lo >> (8 + 4 * h)) & 0xFu) | (((hi >> (8 + hs)) & 3u) << 4)) - 32;
}

// Q3_K: x = d * s * (q - 4), q = low 2 bits + 4 * hmask bit in [0, 7], s the signed 6-bit scale.
template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q3_K>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + (u >> 3) * 110;
  const int j = int(u & 7);
  const float d = half_at(b + 108);
  int s0, s1;
  q3k_scale_pair(b + 96, j, s0, s1);
  const float dl0 = d * float(s0), dl1 = d * float(s1);
  const int shift = 2 * (j & 3);
  uint32_t m[8], w[8];
  load16_a2(b, m);
  load16_a2(b + 16, m + 4);
  load16_a2(b + 32 + 32 * (j >> 2), w);
  load16_a2(b + 48 + 32 * (j >> 2), w + 4);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const int low = int((w[l >> 2] >> (8 * (l & 3) + shift)) & 3u);
    const int high = int((m[l >> 2] >> (8 * (l & 3) + j)) & 1u);
    v[l] = (l < 16 ? dl0 : dl1) * float(low - (high ? 0 : 4));
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q4_K>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + (u >> 3) * 144;
  const int j = int(u & 7);
  const float d = half_at(b), dmin = half_at(b + 2);
  float sc, m;
  k4_scale_min(b + 4, j, sc, m);
  const float d1 = d * sc, m1 = dmin * m;
  const int shift = (j & 1) * 4;
  uint32_t w[8];
  load16_a16(b + 16 + 32 * (j >> 1), w);
  load16_a16(b + 32 + 32 * (j >> 1), w + 4);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const uint32_t q = ((w[l >> 2] >> (8 * (l & 3) + shift)) & 0xF);
    v[l] = d1 * float(q) - m1;
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q5_K>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + (u >> 3) * 176;
  const int j = int(u & 7);
  const float d = half_at(b), dmin = half_at(b + 2);
  float sc, m;
  k4_scale_min(b + 4, j, sc, m);
  const float d1 = d * sc, m1 = dmin * m;
  const int shift = (j & 1) * 4;
  uint32_t h[8], w[8];
  load16_a16(b + 16, h);
  load16_a16(b + 32, h + 4);
  load16_a16(b + 48 + 32 * (j >> 1), w);
  load16_a16(b + 64 + 32 * (j >> 1), w + 4);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const uint32_t lo = (w[l >> 2] >> (8 * (l & 3) + shift)) & 0xF;
    const uint32_t hi = (h[l >> 2] >> (8 * (l & 3) + j)) & 1u;
    v[l] = d1 * float(lo | (hi << 4)) - m1;
  }
}

template <>
__device__ __forceinline__ void dequant_unit<GgmlType::Q6_K>(const uint8_t* row, int64_t u,
                                                             float v[32]) {
  const uint8_t* b = row + (u >> 3) * 210;
  const int j = int(u & 7);
  const int half = j >> 2, k = j & 3;
  const float d = half_at(b + 208);
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192) + 8 * half + 2 * k;
  const float d0 = d * float(scales[0]), d1 = d * float(scales[1]);
  const int lshift = (k >> 1) * 4, hshift = 2 * k;
  uint32_t ql[8], qh[8];
  load16_a2(b + 64 * half + 32 * (k & 1), ql);
  load16_a2(b + 64 * half + 32 * (k & 1) + 16, ql + 4);
  load16_a2(b + 128 + 32 * half, qh);
  load16_a2(b + 128 + 32 * half + 16, qh + 4);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const uint32_t lo = (ql[l >> 2] >> (8 * (l & 3) + lshift)) & 0xF;
    const uint32_t hi = (qh[l >> 2] >> (8 * (l & 3) + hshift)) & 3u;
    v[l] = (l < 16 ? d0 : d1) * (float(int(lo | (hi << 4))) - 32.0f);
  }
}

// ---- factored form, for the GEMV -------------------------------------------------------------
// dequant_unit_raw<T>(row, u, q, s) writes integer-valued (or plain) floats q[0..31] and the
// affine maps of the two 16-element halves, so that element i = s.d[i/16] * q[i] + s.m[i/16].
// A dot product with x then costs one FMA per element: d_lo * sum_lo(q x) + m_lo * sum_lo(x) +
// d_hi * sum_hi(q x) + m_hi * sum_hi(x), with the half sums of x computed once per staged unit.
// Small integers become floats through the exponent trick (0x4B000000 | q is 2^23 + q, one byte
// permute + one FADD) instead of I2F, which runs at a quarter of the FMA rate on Hopper.
struct UnitScale {
  float d[2];
  float m[2];
};

// Four bytes (each < 256) of `packed` -> four floats.
__device__ __forceinline__ void bytes_to_floats(uint32_t packed, float* out) {
  out[0] = __uint_as_float(__byte_perm(packed, 0x4B000000u, 0x7440)) - 8388608.0f;
  out[1] = __uint_as_float(__byte_perm(packed, 0x4B000000u, 0x7441)) - 8388608.0f;
  out[2] = __uint_as_float(__byte_perm(packed, 0x4B000000u, 0x7442)) - 8388608.0f;
  out[3] = __uint_as_float(__byte_perm(packed, 0x4B000000u, 0x7443)) - 8388608.0f;
}
__device__ __forceinline__ void set_scale(UnitScale& s, float d, float m) {
  s.d[0] = s.d[1] = d;
  s.m[0] = s.m[1] = m;
}
// Bits 0..3 of b spread to bit 4 of bytes 0..3 (b * 0x204081 puts bit k at 8k, no carries).
__device__ __forceinline__ uint32_t spread4_to_bit4(uint32_t b) {
  return ((b * 0x00204081u) & 0x01010101u) << 4;
}

template <GgmlType T>
__device__ __forceinline__ void dequant_unit_raw(const uint8_t* row, int64_t u, float q[32],
                                                 UnitScale& s);

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::F32>(const uint8_t* row, int64_t u,
                                                                float q[32], UnitScale& s) {
  dequant_unit<GgmlType::F32>(row, u, q);
  set_scale(s, 1.0f, 0.0f);
}
template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::F16>(const uint8_t* row, int64_t u,
                                                                float q[32], UnitScale& s) {
  dequant_unit<GgmlType::F16>(row, u, q);
  set_scale(s, 1.0f, 0.0f);
}
template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::BF16>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  dequant_unit<GgmlType::BF16>(row, u, q);
  set_scale(s, 1.0f, 0.0f);
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q4_0>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + u * 18;
  const float d = half_at(b);
  uint32_t w[4];
  load16_a2(b + 2, w);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    bytes_to_floats(w[i] & 0x0F0F0F0Fu, q + 4 * i);
    bytes_to_floats((w[i] >> 4) & 0x0F0F0F0Fu, q + 16 + 4 * i);
  }
  set_scale(s, d, -8.0f * d);
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q4_1>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + u * 20;
  const float d = half_at(b), m = half_at(b + 2);
  uint32_t w[4];
  load16_a4(b + 4, w);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    bytes_to_floats(w[i] & 0x0F0F0F0Fu, q + 4 * i);
    bytes_to_floats((w[i] >> 4) & 0x0F0F0F0Fu, q + 16 + 4 * i);
  }
  set_scale(s, d, m);
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q5_0>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + u * 22;
  const float d = half_at(b);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(b + 2);
  const uint32_t qh = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
  uint32_t w[4];
  load16_a2(b + 6, w);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    bytes_to_floats((w[i] & 0x0F0F0F0Fu) | spread4_to_bit4((qh >> (4 * i)) & 0xFu), q + 4 * i);
    bytes_to_floats(((w[i] >> 4) & 0x0F0F0F0Fu) | spread4_to_bit4((qh >> (16 + 4 * i)) & 0xFu),
                    q + 16 + 4 * i);
  }
  set_scale(s, d, -16.0f * d);
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q5_1>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + u * 24;
  const float d = half_at(b), m = half_at(b + 2);
  const uint32_t qh = *reinterpret_cast<const uint32_t*>(b + 4);
  uint32_t w[4];
  load16_a4(b + 8, w);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    bytes_to_floats((w[i] & 0x0F0F0F0Fu) | spread4_to_bit4((qh >> (4 * i)) & 0xFu), q + 4 * i);
    bytes_to_floats(((w[i] >> 4) & 0x0F0F0F0Fu) | spread4_to_bit4((qh >> (16 + 4 * i)) & 0xFu),
                    q + 16 + 4 * i);
  }
  set_scale(s, d, m);
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q8_0>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + u * 34;
  const float d = half_at(b);
  uint32_t w[8];
  load16_a2(b + 2, w);
  load16_a2(b + 18, w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) bytes_to_floats(w[i] ^ 0x80808080u, q + 4 * i);  // q + 128
  set_scale(s, d, -128.0f * d);
}

// Q2_K: codes q in [0, 3]; half i of the unit is sub-block 2j + i: d = d * sc, m = -dmin * min.
template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q2_K>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + (u >> 3) * 84;
  const int j = int(u & 7);
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  const uint32_t sc = *reinterpret_cast<const uint16_t*>(b + 2 * j);
  const int shift = 2 * (j & 3);
  uint32_t w[8];
  load16_a4(b + 16 + 32 * (j >> 2), w);
  load16_a4(b + 32 + 32 * (j >> 2), w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) bytes_to_floats((w[i] >> shift) & 0x03030303u, q + 4 * i);
  s.d[0] = d * float(sc & 0xF);
  s.d[1] = d * float((sc >> 8) & 0xF);
  s.m[0] = -(dmin * float((sc >> 4) & 0xF));
  s.m[1] = -(dmin * float(sc >> 12));
}

// Q3_K: codes q in [0, 7] (the offset -4 goes into m = -4 d s).
template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q3_K>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + (u >> 3) * 110;
  const int j = int(u & 7);
  const float d = half_at(b + 108);
  int s0, s1;
  q3k_scale_pair(b + 96, j, s0, s1);
  const int shift = 2 * (j & 3);
  uint32_t m[8], w[8];
  load16_a2(b, m);
  load16_a2(b + 16, m + 4);
  load16_a2(b + 32 + 32 * (j >> 2), w);
  load16_a2(b + 48 + 32 * (j >> 2), w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i)
    bytes_to_floats(((w[i] >> shift) & 0x03030303u) | (((m[i] >> j) & 0x01010101u) << 2), q + 4 * i);
  s.d[0] = d * float(s0);
  s.d[1] = d * float(s1);
  s.m[0] = -4.0f * s.d[0];
  s.m[1] = -4.0f * s.d[1];
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q4_K>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + (u >> 3) * 144;
  const int j = int(u & 7);
  const float d = half_at(b), dmin = half_at(b + 2);
  float sc, m;
  k4_scale_min(b + 4, j, sc, m);
  const int shift = (j & 1) * 4;
  uint32_t w[8];
  load16_a16(b + 16 + 32 * (j >> 1), w);
  load16_a16(b + 32 + 32 * (j >> 1), w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) bytes_to_floats((w[i] >> shift) & 0x0F0F0F0Fu, q + 4 * i);
  set_scale(s, d * sc, -(dmin * m));
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q5_K>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + (u >> 3) * 176;
  const int j = int(u & 7);
  const float d = half_at(b), dmin = half_at(b + 2);
  float sc, m;
  k4_scale_min(b + 4, j, sc, m);
  const int shift = (j & 1) * 4;
  uint32_t h[8], w[8];
  load16_a16(b + 16, h);
  load16_a16(b + 32, h + 4);
  load16_a16(b + 48 + 32 * (j >> 1), w);
  load16_a16(b + 64 + 32 * (j >> 1), w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i)
    bytes_to_floats(((w[i] >> shift) & 0x0F0F0F0Fu) | (((h[i] >> j) & 0x01010101u) << 4), q + 4 * i);
  set_scale(s, d * sc, -(dmin * m));
}

template <>
__device__ __forceinline__ void dequant_unit_raw<GgmlType::Q6_K>(const uint8_t* row, int64_t u,
                                                                 float q[32], UnitScale& s) {
  const uint8_t* b = row + (u >> 3) * 210;
  const int j = int(u & 7);
  const int half = j >> 2, k = j & 3;
  const float d = half_at(b + 208);
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192) + 8 * half + 2 * k;
  const float d0 = d * float(scales[0]), d1 = d * float(scales[1]);
  const int lshift = (k >> 1) * 4, hshift = 2 * k;
  uint32_t ql[8], qh[8];
  load16_a2(b + 64 * half + 32 * (k & 1), ql);
  load16_a2(b + 64 * half + 32 * (k & 1) + 16, ql + 4);
  load16_a2(b + 128 + 32 * half, qh);
  load16_a2(b + 128 + 32 * half + 16, qh + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i)
    bytes_to_floats(((ql[i] >> lshift) & 0x0F0F0F0Fu) | (((qh[i] >> hshift) & 0x03030303u) << 4),
                    q + 4 * i);
  s.d[0] = d0;
  s.d[1] = d1;
  s.m[0] = -32.0f * d0;
  s.m[1] = -32.0f * d1;
}

// Runtime type -> compile-time type, for every type the kernels support. `f` is a generic lambda
// taking std::integral_constant<GgmlType, T>. Throws for other types (caller names the op).
template <typename F>
bool dispatch_qtype(GgmlType t, F&& f) {
  switch (t) {
#define FATHOM_QCASE(T)                                   \
  case GgmlType::T:                                       \
    f(std::integral_constant<GgmlType, GgmlType::T>{});   \
    return true;
    FATHOM_QCASE(F32) FATHOM_QCASE(F16) FATHOM_QCASE(BF16) FATHOM_QCASE(Q4_0)
    FATHOM_QCASE(Q4_1) FATHOM_QCASE(Q5_0) FATHOM_QCASE(Q5_1) FATHOM_QCASE(Q8_0)
    FATHOM_QCASE(Q2_K) FATHOM_QCASE(Q3_K) FATHOM_QCASE(Q4_K) FATHOM_QCASE(Q5_K)
    FATHOM_QCASE(Q6_K)
#undef FATHOM_QCASE
    default:
      return false;
  }
}

}  // namespace fathom::cuda

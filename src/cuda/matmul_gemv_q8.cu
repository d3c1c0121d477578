// Decode GEMV with int8 activations and dp4a (see matmul_gemv_q8.cuh for the contract).
//
// Why: the fp32-dequantizing GEMV (matmul_gemv.cu) is issue-bound on the quantized types (every
// weight is turned into a float and FMA'd: 33-50% of DRAM bandwidth, docs/perf/NOTES.md). Here a
// weight code meets int8 x codes in dp4a, four products per instruction, and the scales are
// applied once per 8..32 products. x is carried as two int8 planes, x ~= u (254 q1 + q2) per 32
// elements (u = max|x| / (127 * 254)), so its rounding error is max|x| / 64516 per element --
// finer than bf16 -- for twice the dp4a of a single plane (one plane measured 1.3e-2 relative
// logit error on a tiny random Llama, over the 1e-2 the engine tests allow).
//
// Memory path: each warp streams the raw bytes of its rows through a private ring of
// kStages shared-memory slots with 16-byte cp.async copies (coalesced whatever the block
// layout: Q6_K / Q8_0 / Q4_0 blocks are only 2-byte aligned), kStages - 1 stages in flight while
// it computes on the oldest. A stage is 2048 weights of a row: 64 tasks of 32 weights (two per
// lane) or, for Q4_K / Q5_K, 32 tasks of a 64-weight sub-block pair. A warp owns kR = 2 rows (two
// rows of one matrix, or gate row r and up row r for the fused GLU) so every x read from shared
// memory serves both. (The first version, 1024-weight stages with per-item 64-bit index math,
// measured 1.5x slower than the fp32 kernel on the H200: instruction-bound on bookkeeping.)
//
// x: staged once per block, all columns, in shared memory as two planes of int8 codes, 64-byte
// runs padded to 80 bytes (no bank conflicts for the lanes' 16-byte reads at 64-byte strides),
// plus a float2 (u, exact sum) per 32 elements. The block quantizes it from the fp32 x itself (8 threads per
// 32-element block, shuffles for max and sum): no extra kernel and no scratch buffer.
//
// Programmatic dependent launch: the first kStages - 1 weight stages are requested before
// pdl_wait(), so the DRAM latency of the weights overlaps the previous kernel's tail; x is read
// and y written only after it.
//
// Work split (chosen at launch, see plan()): rows come in groups of kR; a group's stages may be
// split over W warps of a block (W in 1,2,4: small matrices), whose partials are added through
// shared memory; with W = 1 the grid is one wave of persistent blocks that walk the groups (x
// staged once per block, the weight ring never drains between groups). Hot-loop pointer math is
// 32-bit offsets on per-group row pointers; full stages of 16-byte aligned rows copy a
// compile-time number of pieces (v3 spent ~2/3 of its instructions on per-item bookkeeping:
// Nsight Compute, Q4_K 14336x4096, 0.19 warp instructions per weight for ~0.06 in the dot code).
#include "cuda/matmul_gemv_q8.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cuda/activation_fn.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/device_info.h"
#include "cuda/pdl.cuh"
#include "cuda/ptx.cuh"
#include "cuda/x_planes.cuh"
#include "fathom/error.h"

namespace fathom::cuda {
namespace {

constexpr int kWarps = 8;         // 2-3 blocks per SM: x is staged 2-3 times per SM
constexpr int kThreads = kWarps * 32;
constexpr int kR = 2;             // rows per warp
constexpr int kStageW = 2048;     // weights of a row per stage
constexpr int kPlaneScale = kXPlaneScale;  // x = u * (254 q1 + q2): two int8 planes (x_planes.cuh)

constexpr uint32_t kM4 = 0x0F0F0F0Fu;

// ---- per-type block geometry ------------------------------------------------------------------
template <GgmlType T> struct Geo;
template <> struct Geo<GgmlType::Q4_0> { static constexpr int blk = 32, bytes = 18; };
template <> struct Geo<GgmlType::Q4_1> { static constexpr int blk = 32, bytes = 20; };
template <> struct Geo<GgmlType::Q5_0> { static constexpr int blk = 32, bytes = 22; };
template <> struct Geo<GgmlType::Q5_1> { static constexpr int blk = 32, bytes = 24; };
template <> struct Geo<GgmlType::Q8_0> { static constexpr int blk = 32, bytes = 34; };
template <> struct Geo<GgmlType::Q2_K> { static constexpr int blk = 256, bytes = 84; };
template <> struct Geo<GgmlType::Q3_K> { static constexpr int blk = 256, bytes = 110; };
template <> struct Geo<GgmlType::Q4_K> { static constexpr int blk = 256, bytes = 144; };
template <> struct Geo<GgmlType::Q5_K> { static constexpr int blk = 256, bytes = 176; };
template <> struct Geo<GgmlType::Q6_K> { static constexpr int blk = 256, bytes = 210; };

template <GgmlType T>
constexpr int stage_bytes() { return kStageW / Geo<T>::blk * Geo<T>::bytes; }
// Weights per lane task: a 64-element sub-block pair for Q4_K / Q5_K, one 32-element block (or
// Q6_K quarter-run set, or Q2_K / Q3_K 32-element run) otherwise.
template <GgmlType T>
constexpr int task_w() { return (T == GgmlType::Q4_K || T == GgmlType::Q5_K) ? 64 : 32; }
// A stage is copied from its 16-byte-aligned floor: up to 15 bytes before and 15 after.
template <GgmlType T>
constexpr int slot_bytes() { return (stage_bytes<T>() + 30 + 15) / 16 * 16; }
// Ring slots per row: 3 (two stages in flight while one is computed) when a block's rings stay
// under ~75 KB (so 2-3 blocks fit per SM beside x), else 2 (Q6_K, Q8_0).
template <GgmlType T>
constexpr int stages() { return kWarps * 2 * 3 * slot_bytes<T>() <= 75 * 1024 ? 3 : 2; }
// Blocks per SM the register budget is sized for (__launch_bounds__): 3 at 1..2 tokens
// (<= 85 registers), 2 above.
template <int NB>
constexpr int min_blocks() { return NB <= 2 ? 3 : 2; }

// ---- small device helpers -----------------------------------------------------------------------
// cp_async16, cp_async_commit / wait: ptx.cuh.

__device__ __forceinline__ int xpad(int k) { return (k >> 6) * 80 + (k & 63); }
__host__ __device__ constexpr int xpad_len(int n) { return (n + 63) / 64 * 80; }

__device__ __forceinline__ float half_lo(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xFFFFu)));
}
__device__ __forceinline__ float half_hi(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
__device__ __forceinline__ float half_at(const uint8_t* p) {  // 2-aligned shared address
  return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// N little-endian words from a 2-byte aligned shared address: N + 1 aligned loads + funnel
// shifts (reads up to 4 bytes past the run; every slot has that slack).
template <int N>
__device__ __forceinline__ void lds_words(const uint8_t* p, uint32_t (&o)[N]) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(a & ~uintptr_t(3));
  const unsigned sh = unsigned(a & 3) * 8u;
  uint32_t prev = w[0];
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const uint32_t nx = w[i + 1];
    o[i] = __funnelshift_r(prev, nx, sh);
    prev = nx;
  }
}

__device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c) {
  return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
}

// Bits 0..3 of v to bit 4 of bytes 0..3 (the Q5 high bits).
__device__ __forceinline__ uint32_t spread4(uint32_t v) {
  return (((v & 0xFu) * 0x00204081u) & 0x01010101u) << 4;
}

// x view of one stage: plane-1 codes of column c at xq + c * xq_cs (xpad of the stage-local
// index), plane-2 codes xp bytes further; (u, sum) of 32-element block b of column c at
// xd[c * xd_cs + b], with x ~= u * (254 q1 + q2).
struct XView {
  const int8_t* xq;
  int xq_cs;
  int xp;
  const float2* xd;
  int xd_cs;
};

__device__ __forceinline__ uint4 x16(const XView& x, int c, int k, int plane) {
  return *reinterpret_cast<const uint4*>(x.xq + plane * x.xp + c * x.xq_cs + xpad(k));
}
__device__ __forceinline__ uint2 x8(const XView& x, int c, int k, int plane) {
  return *reinterpret_cast<const uint2*>(x.xq + plane * x.xp + c * x.xq_cs + xpad(k));
}
// sum over 8 words of w . x (4 int8 products per word), x as two 16-byte runs.
__device__ __forceinline__ int dot8(const uint32_t (&w)[8], uint4 a, uint4 b) {
  int s = dp4a(w[0], a.x, 0);
  s = dp4a(w[1], a.y, s);
  s = dp4a(w[2], a.z, s);
  s = dp4a(w[3], a.w, s);
  s = dp4a(w[4], b.x, s);
  s = dp4a(w[5], b.y, s);
  s = dp4a(w[6], b.z, s);
  return dp4a(w[7], b.w, s);
}
// Two-plane integer dot of 8 code words with the 32 x elements at stage-local k (16-aligned).
__device__ __forceinline__ int dot8x2(const uint32_t (&w)[8], const XView& x, int c, int k) {
  return kPlaneScale * dot8(w, x16(x, c, k, 0), x16(x, c, k + 16, 0)) +
         dot8(w, x16(x, c, k, 1), x16(x, c, k + 16, 1));
}

// ---- per-type task: lane's weights of a stage, dot with NB columns --------------------------
// sw: the stage's first byte in shared memory; t: task index in the stage. acc[c] += w . x[c].
template <GgmlType T, int NB>
struct Task;

// Legacy 32-element blocks: task t = block t of the stage; w[0..3] low nibbles (elements
// 0..15), w[4..7] high nibbles (16..31) or 8 int8 words.
template <int NB, typename F>
__device__ __forceinline__ void legacy_acc(const uint32_t (&w)[8], const XView& x, int t, float (&acc)[NB],
                                           F&& combine) {
#pragma unroll
  for (int c = 0; c < NB; ++c) {
    const int dot = dot8x2(w, x, c, 32 * t);
    acc[c] += combine(x.xd[c * x.xd_cs + t], float(dot));
  }
}

template <int NB>
struct Task<GgmlType::Q4_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 18 * t;
    const float d = half_at(b);
    uint32_t q[4], w[8];
    lds_words<4>(b + 2, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) { w[i] = q[i] & kM4; w[4 + i] = (q[i] >> 4) & kM4; }
    legacy_acc<NB>(w, x, t, acc, [d](float2 xd, float dot) { return d * (xd.x * dot - 8.0f * xd.y); });
  }
};

template <int NB>
struct Task<GgmlType::Q4_1, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 20 * t;
    const float d = half_at(b), m = half_at(b + 2);
    uint32_t q[4], w[8];
    lds_words<4>(b + 4, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) { w[i] = q[i] & kM4; w[4 + i] = (q[i] >> 4) & kM4; }
    legacy_acc<NB>(w, x, t, acc, [d, m](float2 xd, float dot) { return d * xd.x * dot + m * xd.y; });
  }
};

template <int NB>
struct Task<GgmlType::Q5_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 22 * t;
    const float d = half_at(b);
    uint32_t qh[1], q[4], w[8];
    lds_words<1>(b + 2, qh);
    lds_words<4>(b + 6, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = (q[i] & kM4) | spread4(qh[0] >> (4 * i));
      w[4 + i] = ((q[i] >> 4) & kM4) | spread4(qh[0] >> (16 + 4 * i));
    }
    legacy_acc<NB>(w, x, t, acc, [d](float2 xd, float dot) { return d * (xd.x * dot - 16.0f * xd.y); });
  }
};

template <int NB>
struct Task<GgmlType::Q5_1, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 24 * t;
    const float d = half_at(b), m = half_at(b + 2);
    uint32_t qh[1], q[4], w[8];
    lds_words<1>(b + 4, qh);
    lds_words<4>(b + 8, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = (q[i] & kM4) | spread4(qh[0] >> (4 * i));
      w[4 + i] = ((q[i] >> 4) & kM4) | spread4(qh[0] >> (16 + 4 * i));
    }
    legacy_acc<NB>(w, x, t, acc, [d, m](float2 xd, float dot) { return d * xd.x * dot + m * xd.y; });
  }
};

template <int NB>
struct Task<GgmlType::Q8_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 34 * t;
    const float d = half_at(b);
    uint32_t w[8];
    lds_words<8>(b + 2, w);
    legacy_acc<NB>(w, x, t, acc, [d](float2 xd, float dot) { return d * xd.x * dot; });
  }
};

// Q2_K / Q3_K: task t = super-block t / 8, run j = t % 8: elements 32 j + l (l < 32) of the
// super-block, sub-blocks 2j (l < 16) and 2j + 1, whose low 2 code bits are bits 2p..2p+1
// (p = j % 4) of qs[32 (j / 4) + l] and (Q3_K) third bit is bit j of hmask[l]. Their offsets meet
// the rounded x like the codes: Q2_K's mins through a dp4a of the x codes with ones, Q3_K's -4 in
// the signed code bytes. So every weight's whole value multiplies the same rounded x, and the
// error bound is that of the symmetric types (matmul_gemv_q8.cuh).

// One plane: 4 code words . 16 x codes, and the sum of the 16 x codes (dp4a with ones).
__device__ __forceinline__ int dot4(const uint32_t* w, uint4 a) {
  return dp4a(w[3], a.w, dp4a(w[2], a.z, dp4a(w[1], a.y, dp4a(w[0], a.x, 0))));
}
__device__ __forceinline__ int sum4(uint4 a) {
  constexpr uint32_t kOnes = 0x01010101u;
  return dp4a(kOnes, a.w, dp4a(kOnes, a.z, dp4a(kOnes, a.y, dp4a(kOnes, a.x, 0))));
}

template <int NB>
struct Task<GgmlType::Q2_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const int jb = t >> 3, j = t & 7;
    const uint8_t* sb = sw + 84 * jb;  // 4-byte aligned: rows are 84 n bytes from a 16-byte base
    const uint32_t dd = *reinterpret_cast<const uint32_t*>(sb + 80);
    const float d = half_lo(dd), dmin = half_hi(dd);
    const uint32_t sc = *reinterpret_cast<const uint16_t*>(sb + 2 * j);  // sub-blocks 2j, 2j + 1
    const int sc0 = int(sc & 0xFu), m0 = int((sc >> 4) & 0xFu);
    const int sc1 = int((sc >> 8) & 0xFu), m1 = int(sc >> 12);
    const uint32_t* qp = reinterpret_cast<const uint32_t*>(sb + 16 + 32 * (j >> 2));
    const int shift = 2 * (j & 3);
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = (qp[i] >> shift) & 0x03030303u;
    const int k0 = 256 * jb + 32 * j;
    const int b0 = 8 * jb + j;
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const uint4 a0 = x16(x, c, k0, 0), a1 = x16(x, c, k0 + 16, 0);
      const uint4 c0 = x16(x, c, k0, 1), c1 = x16(x, c, k0 + 16, 1);
      // |codes| <= 3 * 127 * 16 per plane: every integer below fits easily in 32 bits.
      const int q0 = kPlaneScale * dot4(w, a0) + dot4(w, c0);
      const int q1 = kPlaneScale * dot4(w + 4, a1) + dot4(w + 4, c1);
      const int n0 = kPlaneScale * sum4(a0) + sum4(c0);
      const int n1 = kPlaneScale * sum4(a1) + sum4(c1);
      acc[c] += x.xd[c * x.xd_cs + b0].x * (d * float(sc0 * q0 + sc1 * q1) - dmin * float(m0 * n0 + m1 * n1));
    }
  }
};

template <int NB>
struct Task<GgmlType::Q3_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const int jb = t >> 3, j = t & 7, h = j >> 2, p = j & 3;
    const uint8_t* sb = sw + 110 * jb;  // 2-byte aligned
    uint32_t hm[8], qs[8];
    lds_words<8>(sb, hm);
    lds_words<8>(sb + 32 + 32 * h, qs);
    // Signed code bytes q - 4: the low 2 bits, or those minus 4 (| 0xFC) where the hmask bit is 0.
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = ((qs[i] >> (2 * p)) & 0x03030303u) | ((~(hm[i] >> j) & 0x01010101u) * 0xFCu);
    // Scales of sub-blocks 2j, 2j + 1 (quant_blocks.cuh q3k_scale_pair, on shared memory).
    const uint32_t lo = *reinterpret_cast<const uint16_t*>(sb + 96 + 2 * p);
    const uint32_t hi = *reinterpret_cast<const uint16_t*>(sb + 104 + 2 * (p & 1));
    const int hs = 2 * (2 * h + (p >> 1));
    const int s0 = int(((lo >> (4 * h)) & 0xFu) | (((hi >> hs) & 3u) << 4)) - 32;
    const int s1 = int(((lo >> (8 + 4 * h)) & 0xFu) | (((hi >> (8 + hs)) & 3u) << 4)) - 32;
    const float d = half_at(sb + 108);
    const int k0 = 256 * jb + 32 * j;
    const int b0 = 8 * jb + j;
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      // |q0| <= 255 * 4 * 127 * 16, |s0 q0 + s1 q1| <= 2^27.
      const int q0 = kPlaneScale * dot4(w, x16(x, c, k0, 0)) + dot4(w, x16(x, c, k0, 1));
      const int q1 = kPlaneScale * dot4(w + 4, x16(x, c, k0 + 16, 0)) + dot4(w + 4, x16(x, c, k0 + 16, 1));
      acc[c] += x.xd[c * x.xd_cs + b0].x * d * float(s0 * q0 + s1 * q1);
    }
  }
};

// Q4_K / Q5_K scales of sub-blocks 2p and 2p+1 (ggml get_scale_min_k4) from the three scale
// words of the header: 6-bit (sc, m) pairs packed as bytes of a 16-bit value each.
__device__ __forceinline__ void k4_pair(uint4 hdr, int p, float& sc0, float& sc1, float& m0, float& m1) {
  const unsigned sel = (p & 1) ? 16u : 0u;
  const uint32_t Y = hdr.y >> sel, Z = hdr.z >> sel, Wd = hdr.w >> sel;
  // Sub-blocks 0..3 (p < 2): the low 6 bits of Y / Z; 4..7: the low (sc) or high (m) nibble of Wd
  // plus the top 2 bits of Y / Z. One formula with per-lane masks: p is lane & 3 in the one-token
  // kernels, so a branch here diverged inside every warp (both paths issued; session 15 SASS).
  const bool hi = p >= 2;
  const uint32_t mlo = hi ? 0x0F0Fu : 0x3F3Fu, mhi = hi ? 0x3030u : 0u;
  const uint32_t sc = ((hi ? Wd : Y) & mlo) | ((Y >> 2) & mhi);
  const uint32_t m = ((hi ? (Wd >> 4) : Z) & mlo) | ((Z >> 2) & mhi);
  sc0 = float(sc & 0xFFu);
  sc1 = float((sc >> 8) & 0xFFu);
  m0 = float(m & 0xFFu);
  m1 = float((m >> 8) & 0xFFu);
}

// Q4_K / Q5_K: task t = super-block t / 4 of the stage, sub-block pair p = t % 4: code bytes
// 32 p .. 32 p + 31, whose low nibbles are elements 64 p + l (sub-block 2p) and high nibbles
// 64 p + 32 + l (sub-block 2p + 1).
template <int NB>
__device__ __forceinline__ void k_dot(const uint32_t (&lo)[8], const uint32_t (&hi)[8], uint4 hdr,
                                      const XView& x, int t, float (&acc)[NB]) {
  const int j = t >> 2, p = t & 3;
  const float d = half_lo(hdr.x), dmin = half_hi(hdr.x);
  float sc0, sc1, m0, m1;
  k4_pair(hdr, p, sc0, sc1, m0, m1);
  const int k0 = 256 * j + 64 * p;
  const int b0 = 8 * j + 2 * p;  // even: (b0, b0 + 1) is one 16-byte float4
#pragma unroll
  for (int c = 0; c < NB; ++c) {
    const int s0 = dot8x2(lo, x, c, k0);
    const int s1 = dot8x2(hi, x, c, k0 + 32);
    const float4 xd = *reinterpret_cast<const float4*>(x.xd + c * x.xd_cs + b0);
    acc[c] += d * (sc0 * xd.x * float(s0) + sc1 * xd.z * float(s1)) - dmin * (m0 * xd.y + m1 * xd.w);
  }
}

template <int NB>
struct Task<GgmlType::Q4_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* sb = sw + 144 * (t >> 2);  // 16-byte aligned: 144 = 9 x 16
    const int p = t & 3;
    const uint4 hdr = *reinterpret_cast<const uint4*>(sb);
    const uint4 qa = *reinterpret_cast<const uint4*>(sb + 16 + 32 * p);
    const uint4 qb = *reinterpret_cast<const uint4*>(sb + 32 + 32 * p);
    const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
    uint32_t lo[8], hi[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) { lo[i] = q[i] & kM4; hi[i] = (q[i] >> 4) & kM4; }
    k_dot<NB>(lo, hi, hdr, x, t, acc);
  }
};

template <int NB>
struct Task<GgmlType::Q5_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* sb = sw + 176 * (t >> 2);  // 16-byte aligned: 176 = 11 x 16
    const int p = t & 3;
    const uint4 hdr = *reinterpret_cast<const uint4*>(sb);
    const uint4 ha = *reinterpret_cast<const uint4*>(sb + 16);
    const uint4 hb = *reinterpret_cast<const uint4*>(sb + 32);
    const uint4 qa = *reinterpret_cast<const uint4*>(sb + 48 + 32 * p);
    const uint4 qb = *reinterpret_cast<const uint4*>(sb + 64 + 32 * p);
    const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
    const uint32_t h[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
    uint32_t lo[8], hi[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      lo[i] = (q[i] & kM4) | (((h[i] >> (2 * p)) & 0x01010101u) << 4);
      hi[i] = ((q[i] >> 4) & kM4) | (((h[i] >> (2 * p + 1)) & 0x01010101u) << 4);
    }
    k_dot<NB>(lo, hi, hdr, x, t, acc);
  }
};

// Q6_K: task t = super-block t / 8, half h = (t & 7) / 4, quarter c4 = t & 3: positions
// l in [8 c4, 8 c4 + 8) of the half's four 32-element runs r (elements 128 h + 32 r + l), whose
// 6-bit codes come from ql[64 h + l (+32 for r odd)] (low / high nibble for r < 2 / r >= 2) and
// bits 2r..2r+1 of qh[32 h + l]; scale int8 scales[8 h + l / 16 + 2 r], code offset -32.
template <int NB>
struct Task<GgmlType::Q6_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const int j = t >> 3, h = (t & 7) >> 2, c4 = t & 3;
    const uint8_t* sb = sw + 210 * j;
    uint32_t A[2], B[2], H[2], S[2];
    lds_words<2>(sb + 64 * h + 8 * c4, A);
    lds_words<2>(sb + 64 * h + 32 + 8 * c4, B);
    lds_words<2>(sb + 128 + 32 * h + 8 * c4, H);
    lds_words<2>(sb + 192 + 8 * h, S);
    const float d = half_at(sb + 208);
    uint32_t q[4][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      q[0][i] = (A[i] & kM4) | ((H[i] & 0x03030303u) << 4);
      q[1][i] = (B[i] & kM4) | (((H[i] >> 2) & 0x03030303u) << 4);
      q[2][i] = ((A[i] >> 4) & kM4) | (((H[i] >> 4) & 0x03030303u) << 4);
      q[3][i] = ((B[i] >> 4) & kM4) | (((H[i] >> 6) & 0x03030303u) << 4);
    }
    const int is = c4 >> 1;
    float sc[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int bi = is + 2 * r;
      sc[r] = float(int(int8_t((S[bi >> 2] >> (8 * (bi & 3))) & 0xFFu)));
    }
    const int k0 = 256 * j + 128 * h + 8 * c4;
    const int b0 = 8 * j + 4 * h;
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      float v = 0.0f;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        int s = 0;
#pragma unroll
        for (int pl = 0; pl < 2; ++pl) {
          const uint2 xv = x8(x, c, k0 + 32 * r, pl);
          int e = dp4a(q[r][0], xv.x, 0);
          e = dp4a(q[r][1], xv.y, e);
          e = dp4a(0xE0E0E0E0u, xv.x, e);  // + (-32) * x: the code offset
          e = dp4a(0xE0E0E0E0u, xv.y, e);
          s = pl == 0 ? kPlaneScale * e : s + e;
        }
        v += sc[r] * x.xd[c * x.xd_cs + b0 + r].x * float(s);
      }
      acc[c] += d * v;
    }
  }
};

// ---- the kernel ---------------------------------------------------------------------------------
struct Seg {
  const uint8_t* w;
  float* y;
  const float* bias;
  int64_t rows;
  int64_t group_begin;  // first group of this segment (groups of kR rows; glu: 1 row pair each)
};

struct Args {
  Seg seg[3];
  int n_seg;
  int64_t cols;
  int64_t row_bytes;
  const float* x;
  int n_tokens;
  const float* residual;
  int glu;            // 0 none, 1 SwiGLU, 2 GeGLU
  const float* norm_w;  // fused RMS norm of x (nullable)
  float norm_eps;
  int64_t n_groups;
  int ksplit;         // W warps per group
  int persistent;     // grid-stride over groups (W == 1)
  int n_stages;       // stages per row: n_full of kStageW weights, then one partial if tail_w > 0
  int n_full;
  int tail_bytes;     // bytes of the partial stage
  int tail_tasks;     // lane tasks of the partial stage
  int aligned;        // every row starts 16-byte aligned (row_bytes % 16 == 0)
};

// Row r (0..kR-1) of group g: pointer and validity.
__device__ __forceinline__ void group_rows(const Args& a, int64_t g, const uint8_t* (&w)[kR],
                                           bool (&ok)[kR], const uint8_t* (&end)[kR]) {
  if (a.glu) {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      ok[r] = g < a.seg[0].rows;
      w[r] = a.seg[r].w + (ok[r] ? g : 0) * a.row_bytes;
      end[r] = a.seg[r].w + a.seg[r].rows * a.row_bytes;
    }
    return;
  }
  int s = 0;
  if (a.n_seg > 1 && g >= a.seg[1].group_begin) s = 1;
  if (a.n_seg > 2 && g >= a.seg[2].group_begin) s = 2;
  const int64_t row0 = (g - a.seg[s].group_begin) * kR;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    ok[r] = row0 + r < a.seg[s].rows;
    w[r] = a.seg[s].w + (ok[r] ? row0 + r : 0) * a.row_bytes;
    end[r] = a.seg[s].w + a.seg[s].rows * a.row_bytes;
  }
}


// Writes the NB outputs of group g's kR rows; v[r][c] is the full dot product.
template <int NB>
__device__ __forceinline__ void store_group(const Args& a, int64_t g, int r, int c, float v0, float v1) {
  // v0 = row 0's (or gate's) value for column c, v1 = row 1's (or up's); r selects which row
  // this call stores (plain mode) and is ignored with glu.
  if (c >= a.n_tokens) return;
  if (a.glu) {
    if (r != 0 || g >= a.seg[0].rows) return;
    const float gt = v0;
    const float act = a.glu == 1 ? silu_f(gt) : gelu_tanh_f(gt);
    a.seg[0].y[int64_t(c) * a.seg[0].rows + g] = act * v1;
    return;
  }
  int s = 0;
  if (a.n_seg > 1 && g >= a.seg[1].group_begin) s = 1;
  if (a.n_seg > 2 && g >= a.seg[2].group_begin) s = 2;
  const int64_t row = (g - a.seg[s].group_begin) * kR + r;
  if (row >= a.seg[s].rows) return;
  float out = (r == 0 ? v0 : v1);
  if (a.seg[s].bias) out += a.seg[s].bias[row];
  const int64_t idx = int64_t(c) * a.seg[s].rows + row;
  if (a.residual) out += a.residual[idx];
  a.seg[s].y[idx] = out;
}

// Stages x for the whole block (after pdl_wait, before a __syncthreads): every column's two int8
// planes (xpad layout, plane 2 xp bytes after plane 1) and (u, sum) per 32 elements, with the
// fused RMS norm applied first when a.norm_w is set. part: kWarps * kR * NB floats of scratch.
// One token's x (stage_x<1>): each thread's x loads (and norm weights) issued kStageXB at a time
// before any is used (written for the Q8_0 kernel in session 14; the one-column loop before it made
// cols / 1024 dependent L2 round trips per thread before the first weight was touched -- at 4096
// columns that wait was half the Q4_K bulk kernel's warp-stall samples, Nsight Compute session 15).
// The sum of squares for the fused norm is accumulated in e4 order per thread, as before. Plane 2
// starts xp bytes after plane 1. XB = 1 is the one-column loop: the shared-memory-ring kernel
// (gemv_q8_kernel<T, 1>) keeps it, since at its 80-register cap the 4-deep batch made Q4_0 / Q4_1
// spill inside the main loop (ptxas, session 15 review); the one-token kernels take XB = 4.
constexpr int kStageXB = 4;
template <int XB>
__device__ __forceinline__ void stage_x1_batched(const Args& a, int8_t* xq, int xp, float2* xd, float* part) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  const int per_c = cols / 4;
  const float4* x4 = reinterpret_cast<const float4*>(a.x);
  const float4* g4 = reinterpret_cast<const float4*>(a.norm_w);
  float s = 1.0f;
  if (a.norm_w) {
    float ss = 0.0f;
    for (int e0 = threadIdx.x; e0 < per_c; e0 += XB * kThreads) {
      float4 v[XB];
#pragma unroll
      for (int u = 0; u < XB; ++u)  // plain loads: written by the previous kernel (PDL)
        v[u] = e0 + u * kThreads < per_c ? x4[e0 + u * kThreads] : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int u = 0; u < XB; ++u)
        ss = fmaf(v[u].x, v[u].x, fmaf(v[u].y, v[u].y, fmaf(v[u].z, v[u].z, fmaf(v[u].w, v[u].w, ss))));
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    float t = 0.0f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) t += part[k];
    s = rsqrtf(t / float(cols) + a.norm_eps);
    __syncthreads();  // part is reused by the caller
  }
  // Block-uniform trip counts: quantize_x4 needs all 32 lanes (8-lane shuffles, full mask).
  for (int base = 0; base < per_c; base += XB * kThreads) {
    float4 v[XB], g[XB];
#pragma unroll
    for (int u = 0; u < XB; ++u) {
      const int e4 = base + u * kThreads + int(threadIdx.x);
      const bool act = e4 < per_c;
      v[u] = act ? x4[e4] : make_float4(0.f, 0.f, 0.f, 0.f);
      g[u] = a.norm_w && act ? __ldg(g4 + e4) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < XB; ++u) {
      if (base + u * kThreads >= per_c) break;  // block-uniform
      const int e4 = base + u * kThreads + int(threadIdx.x);
      const bool act = e4 < per_c;
      float4 w = v[u];
      if (a.norm_w && act)
        w = make_float4(w.x * s * g[u].x, w.y * s * g[u].y, w.z * s * g[u].z, w.w * s * g[u].w);
      const XQuad q = quantize_x4(w);
      if (act) {
        *reinterpret_cast<uint32_t*>(xq + xpad(4 * e4)) = q.p1;
        *reinterpret_cast<uint32_t*>(xq + xp + xpad(4 * e4)) = q.p2;
        if ((e4 & 7) == 0) xd[e4 >> 3] = make_float2(q.u, q.sum);
      }
    }
  }
}

template <int NB>
__device__ __forceinline__ void stage_x(const Args& a, int8_t* xq, int xq_cs, int xp, float2* xd, int xd_cs,
                                        float* part) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  if constexpr (NB == 1) {
    stage_x1_batched<1>(a, xq, xp, xd, part);
    return;
  }
  // Quantize x[c][0 .. cols) of every column into the two planes (x_planes.cuh): 8 threads per
  // 32-element block. Loads of up to kXB float4 per thread are issued before any is used (one
  // L2 round trip per batch).
  const int per_c = cols / 4;
  const int total = NB * per_c;
  const int total_r = (total + 31) & ~31;
  constexpr int kXB = 4;
  // Fused RMS norm: a first pass for the inverse RMS of every column (block reduction through
  // the K-split partial area, which is free until the end).
  float* inv_rms = part;  // NB floats (part holds kWarps * kR * NB >= NB + kWarps * NB)
  if (a.norm_w) {
    float ss[NB];
#pragma unroll
    for (int c = 0; c < NB; ++c) ss[c] = 0.0f;
    for (int e4 = threadIdx.x; e4 < per_c; e4 += kThreads)
#pragma unroll
      for (int c = 0; c < NB; ++c)
        if (c < a.n_tokens) {
          const float4 v = reinterpret_cast<const float4*>(a.x + int64_t(c) * cols)[e4];  // plain load: written by the previous kernel (PDL)
          ss[c] = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss[c]))));
        }
    float* red = part + NB;  // kWarps * NB
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      float v = ss[c];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) red[warp * NB + c] = v;
    }
    __syncthreads();
    if (threadIdx.x < NB) {
      float t = 0.0f;
      for (int k = 0; k < kWarps; ++k) t += red[k * NB + threadIdx.x];
      inv_rms[threadIdx.x] = rsqrtf(t / float(cols) + a.norm_eps);
    }
    __syncthreads();
  }
  for (int i0 = threadIdx.x; i0 - int(threadIdx.x) < total_r; i0 += kXB * kThreads) {
    float4 v[kXB];
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      const int i = i0 + u * kThreads;
      v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (i < total) {
        const int c = i / per_c, e4 = i - c * per_c;
        if (c < a.n_tokens) {
          v[u] = reinterpret_cast<const float4*>(a.x + int64_t(c) * cols)[e4];
          if (a.norm_w) {
            const float s = inv_rms[c];
            const float4 g = __ldg(reinterpret_cast<const float4*>(a.norm_w) + e4);
            v[u] = make_float4(v[u].x * s * g.x, v[u].y * s * g.y, v[u].z * s * g.z, v[u].w * s * g.w);
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      if (i0 - int(threadIdx.x) + u * kThreads >= total_r) break;  // block-uniform
      const int i = i0 + u * kThreads;
      const bool act = i < total;
      const int c = act ? i / per_c : 0;
      const int e4 = act ? i - c * per_c : 0;
      const XQuad q = quantize_x4(v[u]);
      if (act) {
        *reinterpret_cast<uint32_t*>(xq + c * xq_cs + xpad(4 * e4)) = q.p1;
        *reinterpret_cast<uint32_t*>(xq + xp + c * xq_cs + xpad(4 * e4)) = q.p2;
        if ((e4 & 7) == 0) xd[c * xd_cs + (e4 >> 3)] = make_float2(q.u, q.sum);
      }
    }
  }
}

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kThreads, min_blocks<NB>()) gemv_q8_kernel(const __grid_constant__ Args a) {
  extern __shared__ uint4 q8_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(q8_smem4);
  constexpr int kSlot = slot_bytes<T>();
  constexpr int kSB = stage_bytes<T>();
  constexpr int kTW = task_w<T>();
  constexpr int kStages = stages<T>();
  constexpr int kChunks16 = kSB / 16;  // 16-byte pieces of a full, aligned stage
  static_assert(kSB % 16 == 0, "the aligned copy moves whole 16-byte pieces of a stage");
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint8_t* ring = smem + warp * (kStages * kR * kSlot);
  int8_t* xq = reinterpret_cast<int8_t*>(smem + kWarps * kStages * kR * kSlot);
  const int cols = int(a.cols);
  const int xq_cs = xpad_len(cols);
  const int xp = NB * xq_cs;  // plane 2 follows plane 1
  float2* xd = reinterpret_cast<float2*>(xq + 2 * xp);
  const int xd_cs = cols / 32;
  float* part = reinterpret_cast<float*>(xd + NB * xd_cs);  // kWarps * kR * NB partials

  const int W = a.ksplit, G = kWarps / W;
  const int gw = warp / W, slice = warp - gw * W;
  const int ns_w = (a.n_stages - slice + W - 1) / W;  // stages of a group this warp computes
  const int64_t g0 = int64_t(blockIdx.x) * G + gw;
  const int64_t gstep = a.persistent ? int64_t(gridDim.x) * G : 0;
  int n_grp = 0;
  if (g0 < a.n_groups && ns_w > 0) n_grp = a.persistent ? int((a.n_groups - 1 - g0) / gstep) + 1 : 1;
  const int n_items = n_grp * ns_w;

  // Issue side: item (group ordinal ig, stage ordinal is) into ring slot islot.
  int ig = 0, is = 0, islot = 0, issued = 0;
  const uint8_t* iw[kR];
  const uint8_t* iend[kR];  // end of the row's matrix: copies never read past it
  bool iok[kR];
  auto issue = [&]() {
    if (is == 0) group_rows(a, g0 + ig * gstep, iw, iok, iend);
    const int s = slice + W * is;
    uint8_t* slot = ring + islot * (kR * kSlot);
    if (a.aligned && s < a.n_full) {
      // Full stage of a 16-byte aligned row: a compile-time number of 16-byte pieces.
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        if (!iok[r]) continue;
        const uint8_t* src = iw[r] + s * kSB;
#pragma unroll
        for (int k = 0; k < (kChunks16 + 31) / 32; ++k) {
          const int idx = lane + 32 * k;
          if (kChunks16 % 32 == 0 || idx < kChunks16) cp_async16(slot + r * kSlot + 16 * idx, src + 16 * idx);
        }
      }
    } else {
      const int nbytes = s < a.n_full ? kSB : a.tail_bytes;
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        if (!iok[r]) continue;
        const uintptr_t src = reinterpret_cast<uintptr_t>(iw[r] + s * kSB);
        const uintptr_t a0 = src & ~uintptr_t(15);
        const int n16 = int((src + unsigned(nbytes) + 15u - a0) >> 4);
        const uintptr_t lim = reinterpret_cast<uintptr_t>(iend[r]);
        for (int k = lane; k < n16; k += 32) {
          const uintptr_t p = a0 + 16u * unsigned(k);
          if (p + 16u <= lim) {
            cp_async16(slot + r * kSlot + 16 * k, reinterpret_cast<const void*>(p));
          } else {
            // The 16-byte floor/ceiling would read past the matrix (its last row): copy the
            // bytes that exist, 2 at a time (every block size is even), synchronously; the
            // warp's __syncwarp before the slot is computed makes them visible.
            uint16_t* d = reinterpret_cast<uint16_t*>(slot + r * kSlot + 16 * k);
#pragma unroll
            for (int b = 0; b < 8; ++b)
              if (p + 2u * unsigned(b) + 2u <= lim) d[b] = __ldg(reinterpret_cast<const unsigned short*>(p) + b);
          }
        }
      }
    }
    if (++is == ns_w) { is = 0; ++ig; }
    islot = islot + 1 == kStages ? 0 : islot + 1;
    ++issued;
  };

#pragma unroll
  for (int k = 0; k < kStages - 1; ++k) {
    if (issued < n_items) issue();
    cp_async_commit();
  }

  pdl_wait();  // x is written by the previous kernel; y may still be read by it

  stage_x<NB>(a, xq, xq_cs, xp, xd, xd_cs, part);
  __syncthreads();

  float acc[kR][NB];
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;
  // Compute side: item (group ordinal cg, stage ordinal cs) in ring slot cslot.
  int cg = 0, cs = 0, cslot = 0;
  const uint8_t* cw[kR];
  const uint8_t* cend[kR];
  bool cok[kR];
  for (int it = 0; it < n_items; ++it) {
    if (issued < n_items) issue();
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncwarp();
    if (cs == 0) group_rows(a, g0 + cg * gstep, cw, cok, cend);
    const int s = slice + W * cs;
    const bool full = s < a.n_full;
    const int n_tasks = full ? kStageW / kTW : a.tail_tasks;
    const XView xv{xq + s * (kStageW / 64 * 80), xq_cs, xp, xd + s * (kStageW / 32), xd_cs};
    const uint8_t* slot = ring + cslot * (kR * kSlot);
    // Both rows unconditionally (a missing second row computes on stale bytes and is never
    // stored): no branch between the rows, so their loads and dp4a chains interleave and the
    // x reads of the task can be shared.
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const uint8_t* sw = slot + r * kSlot;
      if (!a.aligned) sw += int(reinterpret_cast<uintptr_t>(cw[r] + s * kSB) & 15u);
      if (full && kStageW / kTW == 32) {
        Task<T, NB>::run(sw, lane, xv, acc[r]);
      } else {
        for (int tt = lane; tt < n_tasks; tt += 32) Task<T, NB>::run(sw, tt, xv, acc[r]);
      }
    }
    __syncwarp();  // the slot is refilled by a later issue
    cslot = cslot + 1 == kStages ? 0 : cslot + 1;
    if (++cs == ns_w) {
      cs = 0;
      if (W == 1) {
        // Group complete: reduce over lanes and store.
#pragma unroll
        for (int r = 0; r < kR; ++r)
#pragma unroll
          for (int c = 0; c < NB; ++c) {
            float v = acc[r][c];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
            acc[r][c] = v;
          }
        const int64_t g = g0 + cg * gstep;
#pragma unroll
        for (int c = 0; c < NB; ++c)
          if (c == lane) {
            store_group<NB>(a, g, 0, c, acc[0][c], acc[1][c]);
            if (!a.glu) store_group<NB>(a, g, 1, c, acc[0][c], acc[1][c]);
          }
#pragma unroll
        for (int r = 0; r < kR; ++r)
#pragma unroll
          for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;
      }
      ++cg;
    }
  }
  cp_async_wait<0>();
  pdl_trigger();

  if (W > 1) {
    // Non-persistent: this warp had (at most) one group; add the W slices' partials.
#pragma unroll
    for (int r = 0; r < kR; ++r)
#pragma unroll
      for (int c = 0; c < NB; ++c) {
        float v = acc[r][c];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        acc[r][c] = v;
      }
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < kR; ++r)
#pragma unroll
        for (int c = 0; c < NB; ++c) part[(warp * kR + r) * NB + c] = acc[r][c];
    }
    __syncthreads();
    if (slice == 0 && lane < NB && g0 < a.n_groups) {
      const int c = lane;
      float v0 = 0.0f, v1 = 0.0f;
      for (int k = 0; k < W; ++k) {
        v0 += part[((warp + k) * kR + 0) * NB + c];
        v1 += part[((warp + k) * kR + 1) * NB + c];
      }
      store_group<NB>(a, g0, 0, c, v0, v1);
      if (!a.glu) store_group<NB>(a, g0, 1, c, v0, v1);
    }
  }
}

// ---- the one-token kernels' shared memory: x staged once per block ----------------------------
// From `base`: plane 1 (xq, xpad layout), plane 2 (xq_cs bytes later), the (u, sum) pairs (xd) and
// kWarps * kR floats of stage_x's norm scratch (part). direct_smem_bytes() is its size.
struct OneTokenX {
  int8_t* xq;
  float2* xd;
  float* part;
  int xq_cs, xd_cs;
};
__device__ __forceinline__ OneTokenX one_token_x(uint8_t* base, int cols) {
  OneTokenX o;
  o.xq_cs = xpad_len(cols);
  o.xd_cs = cols / 32;
  o.xq = reinterpret_cast<int8_t*>(base);
  o.xd = reinterpret_cast<float2*>(o.xq + 2 * o.xq_cs);
  o.part = reinterpret_cast<float*>(o.xd + o.xd_cs);
  return o;
}

// The warp's kR row sums (acc: one partial per lane) added across the warp and stored for group g.
__device__ __forceinline__ void one_token_store(const Args& a, int64_t g, float (&acc)[kR], int lane) {
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  if (lane == 0) {
    store_group<1>(a, g, 0, 0, acc[0], acc[1]);
    if (!a.glu) store_group<1>(a, g, 1, 0, acc[0], acc[1]);
  }
}

// The bulk-ring kernels' consumer side, after chunk c of group g: when it was the group's last
// chunk, store the group and move to the warp's next one (g + gstep) with cleared sums. Defined
// where those kernels' bodies are (sm_90 code), else nvcc warns it is unreferenced.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void one_token_chunk_done(const Args& a, int& c, int n_chunks, int64_t& g, int64_t gstep,
                                                     float (&acc)[kR], int lane) {
  if (++c == n_chunks) {
    one_token_store(a, g, acc, lane);
    acc[0] = acc[1] = 0.0f;
    c = 0;
    g += gstep;
  }
}
#endif

// ---- one token, weights straight into registers -------------------------------------------------
// Why: the kernel above streams every row through a shared-memory ring with cp.async and reached
// 42% of the copy bandwidth on Q4_K 14336 x 4096 (18.6 us, H200), while the F16 GEMV, which loads its
// weights straight into registers, reads the 1 GB LM head at 97%. Session 12's Q4_K kernel loaded
// 16-byte code pieces (8 lanes per super-block) straight into registers: 17.0 -> 14.9 us. Session 13
// replaced it by the pair-per-lane kernel below (one scale decode per 64 weights; 15.1 -> 14.4 us,
// 8.07M -> 5.90M instructions), which the bulk-copy ring kernel (matmul_gemv_q4k_bulk.cuh) wraps.
// ldg_stream (16-byte loads that skip L1: each weight byte is read once): ptx.cuh.

// ---- Q6_K, one token: weights straight into registers --------------------------------------------
// The Q4_K kernel's idea for the 210-byte Q6_K super-block (ql[128] low nibbles, qh[64] high bit
// pairs, int8 scales[16], fp16 d at 208), whose rows and super-blocks are only 2-byte aligned.
//
// Loads: the 8 lanes of a lane group cover one super-block at p with the 14 aligned 16-byte chunks
// from F = p & ~15: lane pp loads chunk pp (one 128-byte run per group and instruction, as the Q4_K
// kernel's code loads) and, for pp < 6, chunk 8 + pp. Every byte is loaded once; only chunk 13
// (which holds d) can reach past the matrix, and is then read 2 bytes at a time. kQ6U super-blocks
// x kR rows of these (8 registers each) are in flight before any is used.
// Realignment: piece k (the super-block's bytes 16k .. 16k + 15) is bytes s .. s + 15 of chunks k,
// k + 1 with s = p & 15 (even, per lane and super-block): lane pp takes chunk pp + 1 (piece pp) and
// chunk pp + 9 (piece pp + 8) from lane pp + 1 of its group (8 shuffles) and funnel-selects
// (realign16). Lane pp then holds ql piece pp (P1) and piece pp + 8 (P2: qh pieces on lanes 0..3,
// the scales on lane 4, d on lane 5).
// Work: lane pp decodes its 16 ql bytes: half h = pp / 4, run rl = pp / 2 % 2 (ql[l] or
// ql[l + 32] of the half), l = 16 (pp % 2) + i: low nibbles are elements 128 h + 32 rl + l (qh bits
// 2 rl, 2 rl + 1), high nibbles those + 64 (qh bits 2 rl + 4, + 5); it takes its 16 qh bytes from
// lane 2h + pp % 2 (piece 8 + 2h + pp % 2), the scales (bytes 8h + pp % 4 and + 4) from lane 4, d
// from lane 5. The code offset -32 meets the rounded x as in the ring kernel's Task<Q6_K> (so the
// error bound is that of the symmetric types): each dp4a chain starts from -32 x the sum of its x
// codes, computed once for both rows.
// Lanes of a group whose super-block is past the row (the last batch of rows whose super-block
// count is not a multiple of 4) load nothing and add nothing, but take part in the shuffles: the
// loop is warp-uniform.
constexpr int kQ6U = 4;  // super-blocks per lane group and row in flight

// Bytes s .. s + 15 (s even, 0..14) of the 32 bytes c | n, as four little-endian words.
__device__ __forceinline__ uint4 realign16(uint4 c, uint4 n, int s) {
  const uint32_t w[8] = {c.x, c.y, c.z, c.w, n.x, n.y, n.z, n.w};
  const bool s8 = (s & 8) != 0, s4 = (s & 4) != 0;
  uint32_t e[6], f[5];
#pragma unroll
  for (int k = 0; k < 6; ++k) e[k] = s8 ? w[k + 2] : w[k];
#pragma unroll
  for (int k = 0; k < 5; ++k) f[k] = s4 ? e[k + 1] : e[k];
  const uint32_t sel = (s & 2) ? 0x5432u : 0x3210u;
  return make_uint4(__byte_perm(f[0], f[1], sel), __byte_perm(f[1], f[2], sel), __byte_perm(f[2], f[3], sel),
                    __byte_perm(f[3], f[4], sel));
}

__device__ __forceinline__ uint4 shfl8(uint4 v, int src) {
  return make_uint4(__shfl_sync(0xffffffffu, v.x, src, 8), __shfl_sync(0xffffffffu, v.y, src, 8),
                    __shfl_sync(0xffffffffu, v.z, src, 8), __shfl_sync(0xffffffffu, v.w, src, 8));
}

// A 16-byte aligned chunk that may end past `end` (the matrix's last super-block): the bytes
// before `end`, 2 at a time (rows are a whole number of 210-byte super-blocks), zeros after.
__device__ __forceinline__ uint4 ldg_chunk_end(const uint8_t* p, const uint8_t* end) {
  if (p + 16 <= end) return ldg_stream(p);
  uint32_t w[4] = {0u, 0u, 0u, 0u};
  const unsigned short* hp = reinterpret_cast<const unsigned short*>(p);
#pragma unroll
  for (int b = 0; b < 8; ++b)
    if (p + 2 * b + 2 <= end) w[b >> 1] |= uint32_t(__ldg(hp + b)) << (16 * (b & 1));
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__global__ void __launch_bounds__(kThreads, 2) gemv_q6k_direct_kernel(const __grid_constant__ Args a) {
  extern __shared__ uint4 q8_smem4[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  const OneTokenX ox = one_token_x(reinterpret_cast<uint8_t*>(q8_smem4), cols);
  int8_t* const xq = ox.xq;
  float2* const xd = ox.xd;
  const int xq_cs = ox.xq_cs, xd_cs = ox.xd_cs;
  float* const part = ox.part;

  const int n_sb = cols / 256;
  const int pp = lane & 7, sb0 = lane >> 3;
  const int h = pp >> 2, c = pp & 1, rl = (pp >> 1) & 1;
  const int iters = (n_sb + 3) / 4;  // batches of 4 super-blocks per row, the same for every lane
  const int64_t gstep = int64_t(gridDim.x) * kWarps;
  const int64_t g0 = int64_t(blockIdx.x) * kWarps + warp;

  // The first group's first chunks into L2 while the previous kernel finishes (PDL).
  if (g0 < a.n_groups) {
    const uint8_t* w[kR];
    bool ok[kR];
    const uint8_t* end[kR];
    group_rows(a, g0, w, ok, end);
#pragma unroll
    for (int u = 0; u < kQ6U; ++u)
#pragma unroll
      for (int r = 0; r < kR; ++r)
        if (sb0 + 4 * u < n_sb && ok[r]) {
          const uint8_t* f = reinterpret_cast<const uint8_t*>(
              reinterpret_cast<uintptr_t>(w[r] + (sb0 + 4 * u) * 210) & ~uintptr_t(15));
          asm volatile("prefetch.global.L2 [%0];" ::"l"(f + 16 * pp));
          if (pp < 5) asm volatile("prefetch.global.L2 [%0];" ::"l"(f + 128 + 16 * pp));
        }
  }
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  stage_x1_batched<kStageXB>(a, xq, xq_cs, xd, part);
  __syncthreads();

  const XView xv{xq, xq_cs, xq_cs, xd, xd_cs};
  const int src_next = (pp + 1) & 7;  // lanes within the group of 8 (shfl width 8)
  const int src_qh = 2 * h + c;
  const int kin = 128 * h + 32 * rl + 16 * c;  // the lane's low-nibble elements in a super-block
  const int bin = 4 * h + rl;                  // their 32-element block; the high nibbles': + 2
  const unsigned sc_sh = 8u * unsigned(pp & 3);
  constexpr uint32_t kNeg32 = 0xE0E0E0E0u;  // -32 in every byte: dp4a with it is -32 x sum
  for (int64_t g = g0; g < a.n_groups; g += gstep) {
    const uint8_t* w[kR];
    bool ok[kR];
    const uint8_t* end[kR];
    group_rows(a, g, w, ok, end);
    float acc[kR] = {0.0f, 0.0f};
    for (int i0 = 0; i0 < iters; i0 += kQ6U) {
      uint4 r1[kQ6U][kR], r2[kQ6U][kR];
#pragma unroll
      for (int u = 0; u < kQ6U; ++u)
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          r1[u][r] = make_uint4(0u, 0u, 0u, 0u);
          r2[u][r] = make_uint4(0u, 0u, 0u, 0u);
          const int j = sb0 + 4 * (i0 + u);
          if (j < n_sb) {
            const uint8_t* f = reinterpret_cast<const uint8_t*>(
                reinterpret_cast<uintptr_t>(w[r] + int64_t(j) * 210) & ~uintptr_t(15));
            r1[u][r] = ldg_stream(f + 16 * pp);
            if (pp < 6) r2[u][r] = ldg_chunk_end(f + 128 + 16 * pp, end[r]);
          }
        }
#pragma unroll
      for (int u = 0; u < kQ6U; ++u) {
        if (i0 + u >= iters) break;  // warp-uniform
        const int j = sb0 + 4 * (i0 + u);
        const bool live = j < n_sb;
        const int jx = live ? j : 0;
        const int k0 = 256 * jx + kin;
        uint4 xl[2], xh[2];
        int nl[2], nh[2];
#pragma unroll
        for (int pl = 0; pl < 2; ++pl) {
          xl[pl] = x16(xv, 0, k0, pl);
          xh[pl] = x16(xv, 0, k0 + 64, pl);
          nl[pl] = dp4a(kNeg32, xl[pl].w, dp4a(kNeg32, xl[pl].z, dp4a(kNeg32, xl[pl].y, dp4a(kNeg32, xl[pl].x, 0))));
          nh[pl] = dp4a(kNeg32, xh[pl].w, dp4a(kNeg32, xh[pl].z, dp4a(kNeg32, xh[pl].y, dp4a(kNeg32, xh[pl].x, 0))));
        }
        const float ul = xd[8 * jx + bin].x, uh = xd[8 * jx + bin + 2].x;
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          const int s = int(reinterpret_cast<uintptr_t>(w[r] + int64_t(jx) * 210) & 15u);
          const uint4 n1 = shfl8(pp == 0 ? r2[u][r] : r1[u][r], src_next);
          const uint4 n2 = shfl8(r2[u][r], src_next);
          const uint4 p1 = realign16(r1[u][r], n1, s);  // ql bytes 16 pp ..
          const uint4 p2 = realign16(r2[u][r], n2, s);  // bytes 128 + 16 pp ..
          const uint4 qh = shfl8(p2, src_qh);
          const uint4 sc = shfl8(p2, 4);
          const uint32_t dw = __shfl_sync(0xffffffffu, p2.x, 5, 8);
          const uint32_t ql4[4] = {p1.x, p1.y, p1.z, p1.w};
          const uint32_t qh4[4] = {qh.x, qh.y, qh.z, qh.w};
          int dl1 = nl[0], dl2 = nl[1], dh1 = nh[0], dh2 = nh[1];
          const uint32_t xl1[4] = {xl[0].x, xl[0].y, xl[0].z, xl[0].w}, xl2[4] = {xl[1].x, xl[1].y, xl[1].z, xl[1].w};
          const uint32_t xh1[4] = {xh[0].x, xh[0].y, xh[0].z, xh[0].w}, xh2[4] = {xh[1].x, xh[1].y, xh[1].z, xh[1].w};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const uint32_t q = qh4[i] >> (2 * rl);
            const uint32_t lo = (ql4[i] & kM4) | ((q << 4) & 0x30303030u);
            const uint32_t hi = ((ql4[i] >> 4) & kM4) | (q & 0x30303030u);
            dl1 = dp4a(lo, xl1[i], dl1);
            dl2 = dp4a(lo, xl2[i], dl2);
            dh1 = dp4a(hi, xh1[i], dh1);
            dh2 = dp4a(hi, xh2[i], dh2);
          }
          const float scl = float(int(int8_t(((h ? sc.z : sc.x) >> sc_sh) & 0xFFu)));
          const float sch = float(int(int8_t(((h ? sc.w : sc.y) >> sc_sh) & 0xFFu)));
          const float d = half_lo(dw);
          // |dl1| <= 16 * 32 * 127: 254 dl1 + dl2 fits easily in 32 bits.
          const float v = d * (scl * ul * float(kPlaneScale * dl1 + dl2) + sch * uh * float(kPlaneScale * dh1 + dh2));
          if (live) acc[r] += v;
        }
      }
    }
    one_token_store(a, g, acc, lane);
  }
  pdl_trigger();
}

// ---- Q4_K, one token, a whole sub-block pair per lane -------------------------------------------
// Why (session 13): session 12's kernel (16-byte pieces, 8 lanes per super-block) spent 83
// instructions per lane per piece (Nsight Compute + SASS, 14336 x 4096: 665 per inner iteration,
// 128 of them dp4a): the scale decode (k4_pair, d / dmin, 4 int -> float) was paid once per 32
// weights, the high nibbles took a shift and a mask per word, and the min term was added by half
// the lanes while all issued it.
// Here lane l owns sub-block pair p = l % 4 of super-blocks l / 4, l / 4 + 8, ...: both 16-byte
// halves of the pair's 32 code bytes (64 weights per scale decode), the high nibbles are masked in
// place (q & 0xF0F0F0F0, an unsigned-by-signed dp4a gives 16x their dot, folded into the scale)
// and each lane adds its own min terms. Two super-blocks x two rows in flight per lane
// (12 x 16-byte loads, ~6 KB per warp).
constexpr int kPairU = 2;  // super-blocks per lane and row in flight
__device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {  // unsigned a . signed b
  int d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// One lane's share of a batch: kR rows x (header, code bytes 32p..32p+15, 32p+16..32p+31).
struct PairBuf {
  uint4 qa[kR], qb[kR], h[kR];
};
// acc[r] += the lane's pair of super-block j of both rows (j < n_sb checked by the caller).
__device__ __forceinline__ void pair_dot(const PairBuf& b, const XView& xv, const float2* xd, int j, int p,
                                         float (&acc)[kR]) {
  constexpr uint32_t kM4h = 0xF0F0F0F0u;
  const int k0 = 256 * j + 64 * p;
  const uint4 xl1a = x16(xv, 0, k0, 0), xl1b = x16(xv, 0, k0 + 16, 0);
  const uint4 xl2a = x16(xv, 0, k0, 1), xl2b = x16(xv, 0, k0 + 16, 1);
  const uint4 xh1a = x16(xv, 0, k0 + 32, 0), xh1b = x16(xv, 0, k0 + 48, 0);
  const uint4 xh2a = x16(xv, 0, k0 + 32, 1), xh2b = x16(xv, 0, k0 + 48, 1);
  const float4 xs = *reinterpret_cast<const float4*>(xd + 8 * j + 2 * p);  // (u, sum) of 2p, 2p + 1
  const uint32_t xl1[8] = {xl1a.x, xl1a.y, xl1a.z, xl1a.w, xl1b.x, xl1b.y, xl1b.z, xl1b.w};
  const uint32_t xl2[8] = {xl2a.x, xl2a.y, xl2a.z, xl2a.w, xl2b.x, xl2b.y, xl2b.z, xl2b.w};
  const uint32_t xh1[8] = {xh1a.x, xh1a.y, xh1a.z, xh1a.w, xh1b.x, xh1b.y, xh1b.z, xh1b.w};
  const uint32_t xh2[8] = {xh2a.x, xh2a.y, xh2a.z, xh2a.w, xh2b.x, xh2b.y, xh2b.z, xh2b.w};
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const uint32_t wq[8] = {b.qa[r].x, b.qa[r].y, b.qa[r].z, b.qa[r].w, b.qb[r].x, b.qb[r].y, b.qb[r].z, b.qb[r].w};
    int l1 = 0, l2 = 0, h1 = 0, h2 = 0;  // four independent chains
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      l1 = dp4a(wq[e] & kM4, xl1[e], l1);
      l2 = dp4a(wq[e] & kM4, xl2[e], l2);
      h1 = dp4a_us(wq[e] & kM4h, xh1[e], h1);
      h2 = dp4a_us(wq[e] & kM4h, xh2[e], h2);
    }
    const int s_lo = kPlaneScale * l1 + l2;
    const int s_hi = kPlaneScale * h1 + h2;  // 16 x the high nibbles' dot
    const float d = half_lo(b.h[r].x), dmin = half_hi(b.h[r].x);
    float sc0, sc1, m0, m1;
    k4_pair(b.h[r], p, sc0, sc1, m0, m1);
    acc[r] += d * (sc0 * xs.x * float(s_lo) + (0.0625f * sc1) * xs.z * float(s_hi)) - dmin * (m0 * xs.y + m1 * xs.w);
  }
}

__global__ void __launch_bounds__(kThreads, 2) gemv_q4k_pair_kernel(const __grid_constant__ Args a) {
  extern __shared__ uint4 q8_smem4[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  const OneTokenX ox = one_token_x(reinterpret_cast<uint8_t*>(q8_smem4), cols);
  int8_t* const xq = ox.xq;
  float2* const xd = ox.xd;
  const int xq_cs = ox.xq_cs, xd_cs = ox.xd_cs;
  float* const part = ox.part;

  const int n_sb = cols / 256;
  const int p = lane & 3;
  const int sb0 = lane >> 2;
  const int iters = (n_sb - sb0 + 7) / 8;  // super-blocks of this lane per row
  const int64_t gstep = int64_t(gridDim.x) * kWarps;
  const int64_t g0 = int64_t(blockIdx.x) * kWarps + warp;

  if (g0 < a.n_groups) {  // the first group's first pieces into L2 while the previous kernel finishes
    const uint8_t* w[kR];
    bool ok[kR];
    const uint8_t* end[kR];
    group_rows(a, g0, w, ok, end);
#pragma unroll
    for (int u = 0; u < kPairU; ++u)
#pragma unroll
      for (int r = 0; r < kR; ++r)
        if (u < iters && ok[r]) asm volatile("prefetch.global.L2 [%0];" ::"l"(w[r] + (sb0 + 8 * u) * 144 + 16 + 32 * p));
  }
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  stage_x1_batched<kStageXB>(a, xq, xq_cs, xd, part);
  __syncthreads();

  const XView xv{xq, xq_cs, xq_cs, xd, xd_cs};
  for (int64_t g = g0; g < a.n_groups; g += gstep) {
    const uint8_t* w[kR];
    bool ok[kR];
    const uint8_t* end[kR];
    group_rows(a, g, w, ok, end);
    float acc[kR] = {0.0f, 0.0f};
    for (int i0 = 0; i0 < iters; i0 += kPairU) {
      PairBuf b[kPairU];
#pragma unroll
      for (int u = 0; u < kPairU; ++u)
#pragma unroll
        for (int r = 0; r < kR; ++r)
          if (i0 + u < iters) {
            const uint8_t* sb = w[r] + int64_t(sb0 + 8 * (i0 + u)) * 144;
            b[u].h[r] = __ldg(reinterpret_cast<const uint4*>(sb));
            b[u].qa[r] = ldg_stream(sb + 16 + 32 * p);
            b[u].qb[r] = ldg_stream(sb + 32 + 32 * p);
          }
#pragma unroll
      for (int u = 0; u < kPairU; ++u) {
        if (i0 + u >= iters) break;
        pair_dot(b[u], xv, xd, sb0 + 8 * (i0 + u), p, acc);
      }
    }
    one_token_store(a, g, acc, lane);
  }
  pdl_trigger();
}

// ---- launch planning ----------------------------------------------------------------------------
// Shared memory of a launch: the warps' weight rings, the two x planes of all columns (one
// staging, no chunking), the (u, sum) pairs and the K-split partials.
template <GgmlType T>
size_t q8_smem_bytes(int nb, int64_t cols) {
  return size_t(kWarps) * stages<T>() * kR * slot_bytes<T>() + 2 * size_t(nb) * size_t(xpad_len(int(cols))) +
         size_t(nb) * size_t(cols / 32) * sizeof(float2) + size_t(kWarps) * kR * size_t(nb) * sizeof(float);
}
constexpr size_t kQ8SmemLimit = 227 * 1024;  // sm_90 opt-in maximum per block
template <GgmlType T>
constexpr bool is_q8_type() {
  return T == GgmlType::Q4_0 || T == GgmlType::Q4_1 || T == GgmlType::Q5_0 || T == GgmlType::Q5_1 ||
         T == GgmlType::Q8_0 || T == GgmlType::Q2_K || T == GgmlType::Q3_K || T == GgmlType::Q4_K ||
         T == GgmlType::Q5_K || T == GgmlType::Q6_K;
}

template <typename F>
bool dispatch_q8(GgmlType t, F&& f) {
  switch (t) {
    case GgmlType::Q4_0: f(std::integral_constant<GgmlType, GgmlType::Q4_0>{}); return true;
    case GgmlType::Q4_1: f(std::integral_constant<GgmlType, GgmlType::Q4_1>{}); return true;
    case GgmlType::Q5_0: f(std::integral_constant<GgmlType, GgmlType::Q5_0>{}); return true;
    case GgmlType::Q5_1: f(std::integral_constant<GgmlType, GgmlType::Q5_1>{}); return true;
    case GgmlType::Q8_0: f(std::integral_constant<GgmlType, GgmlType::Q8_0>{}); return true;
    case GgmlType::Q2_K: f(std::integral_constant<GgmlType, GgmlType::Q2_K>{}); return true;
    case GgmlType::Q3_K: f(std::integral_constant<GgmlType, GgmlType::Q3_K>{}); return true;
    case GgmlType::Q4_K: f(std::integral_constant<GgmlType, GgmlType::Q4_K>{}); return true;
    case GgmlType::Q5_K: f(std::integral_constant<GgmlType, GgmlType::Q5_K>{}); return true;
    case GgmlType::Q6_K: f(std::integral_constant<GgmlType, GgmlType::Q6_K>{}); return true;
    default: return false;
  }
}

template <GgmlType T, int NB>
void launch_nb(Args a, const GemvQ8Params& p, cudaStream_t stream) {
  const DeviceInfo dev = device_info();
  const size_t smem = q8_smem_bytes<T>(NB, a.cols);
  FATHOM_CHECK(smem <= size_t(dev.max_smem_optin), "gemv_q8: ", smem, " bytes of shared memory exceed the device's ",
               dev.max_smem_optin, " (cols ", a.cols, ", ", NB, " columns): see gemv_q8_supports()");
  auto kernel = gemv_q8_kernel<T, NB>;
  const int bps = blocks_per_sm(reinterpret_cast<const void*>(kernel), kThreads, smem);
  a.n_full = int(a.cols / kStageW);
  const int tail_w = int(a.cols % kStageW);
  a.n_stages = a.n_full + (tail_w > 0 ? 1 : 0);
  a.tail_bytes = tail_w / Geo<T>::blk * Geo<T>::bytes;
  a.tail_tasks = tail_w / task_w<T>();
  a.aligned = a.row_bytes % 16 == 0 ? 1 : 0;
  const int64_t wave_warps = int64_t(dev.sm_count) * bps * kWarps;
  // K split: none when the row groups fill at least half the warp slots of a wave; else the
  // smallest W (<= stages per row, <= 8) that gives about a wave of warps.
  int W = 1;
  if (2 * a.n_groups < wave_warps)
    while (W < 8 && 2 * W <= a.n_stages && a.n_groups * W < wave_warps) W *= 2;
  a.ksplit = W;
  int64_t grid;
  if (W == 1) {
    a.persistent = 1;
    const int64_t need = (a.n_groups + kWarps - 1) / kWarps;
    const int64_t wave = int64_t(dev.sm_count) * bps;
    grid = need < wave ? need : wave;
  } else {
    a.persistent = 0;
    const int G = kWarps / W;
    grid = (a.n_groups + G - 1) / G;
  }
  double wbytes = 0.0;
  for (int s = 0; s < a.n_seg; ++s) wbytes += double(a.seg[s].rows) * double(a.row_bytes);
  double rows_total = 0.0;
  for (int s = 0; s < a.n_seg; ++s) rows_total += double(a.seg[s].rows);
  launch_cost_hint(wbytes + double(p.n_tokens) * double(a.cols) * 4.0 + double(p.n_tokens) * rows_total * 4.0,
                   2.0 * double(p.n_tokens) * rows_total * double(a.cols));
  launch_kernel(kernel, dim3(unsigned(grid)), dim3(kThreads), smem, stream, a);
}

// The one-token Q4_K / Q6_K / Q8_0 kernels (gemv_q4k_*, gemv_q6k_*, gemv_q80_bulk_kernel)
// are used unless FATHOM_GEMV_DIRECT=0 (then the shared-memory-ring kernel, for A/B runs).
// Which Q4_K one: FATHOM_GEMV_Q4K=bulk (gemv_q4k_bulk_kernel, the default on sm_90) or pair
// (gemv_q4k_pair_kernel, the default below sm_90). (Session 12's 16-byte-piece kernel, which
// the pair kernel replaced, was removed in session 13.)
// (A software-pipelined pair kernel -- next batch's loads in flight during the current one's math,
// two register buffers -- measured slower: 15.74 vs 14.49 us on 14336 x 4096, engine 363.1 vs
// 369.8 tok/s; removed. bench/device_s13e.sh.)
// The A/B switch of a kernel choice: environment variable `name` unset, empty or `zero` -> 0,
// `one` -> 1, anything else an error (the callers read it once per process).
int two_way_env(const char* name, const char* zero, const char* one) {
  const char* e = std::getenv(name);
  if (!e || !*e || std::strcmp(e, zero) == 0) return 0;
  if (std::strcmp(e, one) == 0) return 1;
  ::fathom::fail(name, "='", e, "': expected ", zero, " or ", one);
}

enum class Q4kKernel { Bulk = 0, Pair = 1, Ring = 2 };
std::atomic<int> g_q4k_override{-1};
Q4kKernel q4k_kernel() {
  const int o = g_q4k_override.load(std::memory_order_relaxed);
  if (o >= 0) return Q4kKernel(o);
  static const int env = two_way_env("FATHOM_GEMV_Q4K", "bulk", "pair");
  return Q4kKernel(env);
}

// The Q4_K bulk kernel's stage (matmul_gemv_q4k_bulk.cuh): FATHOM_GEMV_Q4K_STAGE=16 (16
// super-blocks per row and stage, 2 ring slots; the default since session 15: 14336 x 4096 15.49 ->
// 14.36 us, llama3-8b Q4_K_M 402.6 -> 411.5 tok/s, bench/device_s15b.sh) or 8 (8 super-blocks,
// 4 slots: the same ring bytes).
std::atomic<int> g_q4k_stage_override{-1};
int q4k_bulk_stage() {
  const int o = g_q4k_stage_override.load(std::memory_order_relaxed);
  if (o >= 0) return o == 1 ? 16 : 8;
  static const int env = two_way_env("FATHOM_GEMV_Q4K_STAGE", "16", "8");
  return env == 1 ? 8 : 16;
}

// Which one-token Q8_0 kernel: FATHOM_GEMV_Q8_0=bulk (gemv_q80_bulk_kernel, matmul_gemv_q8_0_one.cuh;
// the default, taken on sm_90 code for cols % 256 == 0) or ring (the shared-memory-ring kernel).
enum class Q80Kernel { Bulk = 0, Ring = 1 };
std::atomic<int> g_q80_override{-1};
Q80Kernel q80_kernel() {
  const int o = g_q80_override.load(std::memory_order_relaxed);
  if (o >= 0) return Q80Kernel(o);
  static const int env = two_way_env("FATHOM_GEMV_Q8_0", "bulk", "ring");
  return Q80Kernel(env);
}

// Which one-token Q6_K kernel: FATHOM_GEMV_Q6K=bulk (gemv_q6k_bulk_kernel, matmul_gemv_q6k_bulk.cuh;
// the default, taken on sm_90 code for cols % 2048 == 0) or direct (gemv_q6k_direct_kernel).
enum class Q6kKernel { Bulk = 0, Direct = 1 };
std::atomic<int> g_q6k_override{-1};
Q6kKernel q6k_kernel() {
  const int o = g_q6k_override.load(std::memory_order_relaxed);
  if (o >= 0) return Q6kKernel(o);
  static const int env = two_way_env("FATHOM_GEMV_Q6K", "bulk", "direct");
  return Q6kKernel(env);
}

bool direct_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("FATHOM_GEMV_DIRECT");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

size_t direct_smem_bytes(int64_t cols) {
  return 2 * size_t(xpad_len(int(cols))) + size_t(cols / 32) * sizeof(float2) + size_t(kWarps) * kR * sizeof(float);
}

// kernel: gemv_q4k_pair_kernel, gemv_q6k_direct_kernel or gemv_q4k_bulk_kernel (same Args and
// grid: one persistent wave of 8-warp blocks); smem: its dynamic shared memory.
// warp_major: the kernel hands groups out warp-major (g0 = warp * gridDim + block: the Q6_K and
// Q8_0 bulk kernels), so the grid is min(n_groups, blocks per wave) -- at least one group per block
// rather than one per warp, and a small matrix is still read by every SM.
void launch_one_token(void (*kernel)(const Args), size_t smem, const Args& a, cudaStream_t stream,
                      bool warp_major = false) {
  const DeviceInfo dev = device_info();
  FATHOM_CHECK(smem <= size_t(dev.max_smem_optin), "gemv_q8: ", smem, " bytes of shared memory exceed the device's ",
               dev.max_smem_optin, " (cols ", a.cols, ")");
  const int bps = blocks_per_sm(reinterpret_cast<const void*>(kernel), kThreads, smem);
  const int64_t need = warp_major ? a.n_groups : (a.n_groups + kWarps - 1) / kWarps;
  const int64_t wave = int64_t(dev.sm_count) * bps;
  const int64_t grid = need < wave ? need : wave;
  double wbytes = 0.0, rows_total = 0.0;
  for (int s = 0; s < a.n_seg; ++s) {
    wbytes += double(a.seg[s].rows) * double(a.row_bytes);
    rows_total += double(a.seg[s].rows);
  }
  launch_cost_hint(wbytes + double(a.cols) * 4.0 + rows_total * 4.0, 2.0 * rows_total * double(a.cols));
  launch_kernel(kernel, dim3(unsigned(grid)), dim3(kThreads), smem, stream, a);
}

#include "cuda/matmul_gemv_q4k_bulk.cuh"
#include "cuda/matmul_gemv_q8_0_one.cuh"
#include "cuda/matmul_gemv_q6k_bulk.cuh"

}  // namespace

bool gemv_q8_supports(GgmlType type, int64_t n_tokens, int64_t cols) {
  static const bool off = [] {
    const char* e = std::getenv("FATHOM_GEMV_Q8");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (off || n_tokens < 1 || n_tokens > kGemvQ8MaxTokens || cols <= 0 || cols > (int64_t(1) << 20)) return false;
  const int nb = n_tokens <= 1 ? 1 : n_tokens <= 2 ? 2 : n_tokens <= 4 ? 4 : 8;
  bool fits = false;
  const bool known = dispatch_q8(type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    // The device's own opt-in limit (sm_86/89: 99 KB, sm_80: 163 KB, sm_90: 227 KB): a shape that
    // does not fit takes the fp32 GEMV instead of failing at launch.
    const size_t limit = std::min(kQ8SmemLimit, size_t(device_info().max_smem_optin));
    fits = q8_smem_bytes<T>(nb, cols) <= limit;
  });
  return known && fits;
}

void launch_gemv_q8(const GemvQ8Params& p, cudaStream_t stream) {
  FATHOM_CHECK(p.n_tokens >= 1 && p.n_tokens <= kGemvQ8MaxTokens, "gemv_q8: n_tokens ", p.n_tokens,
               " outside 1..", kGemvQ8MaxTokens);
  FATHOM_CHECK(p.n_seg >= 1 && p.n_seg <= 3 && (!p.glu || p.n_seg == 2) && (!p.residual || p.n_seg == 1),
               "gemv_q8: bad segment set (n_seg ", p.n_seg, ", glu ", p.glu, ")");
  const int64_t blk = ggml_type_traits(p.type).block_elems;
  FATHOM_CHECK(p.cols > 0 && p.cols % 32 == 0 && p.cols % blk == 0, "gemv_q8: cols ", p.cols,
               " must be a positive multiple of ", blk, " for ", ggml_type_name(p.type));
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.x) % 16 == 0, "gemv_q8: x must be 16-byte aligned");
  Args a{};
  a.n_seg = p.n_seg;
  a.cols = p.cols;
  a.row_bytes = int64_t(ggml_row_bytes(p.type, p.cols));
  a.x = p.x;
  a.n_tokens = int(p.n_tokens);
  a.residual = p.residual;
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.norm_w) % 16 == 0, "gemv_q8: norm_w must be 16-byte aligned");
  a.norm_w = p.norm_w;
  a.norm_eps = p.norm_eps;
  a.glu = p.glu ? (p.glu_kind == GluKind::SWIGLU ? 1 : 2) : 0;
  int64_t groups = 0;
  for (int s = 0; s < p.n_seg; ++s) {
    FATHOM_CHECK(p.seg[s].w && p.seg[s].y && p.seg[s].rows > 0, "gemv_q8: segment ", s, " is empty");
    FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.seg[s].w) % 16 == 0, "gemv_q8: weights must be 16-byte aligned");
    a.seg[s] = Seg{static_cast<const uint8_t*>(p.seg[s].w), p.seg[s].y, p.seg[s].bias, p.seg[s].rows, groups};
    if (!p.glu) groups += (p.seg[s].rows + kR - 1) / kR;
  }
  if (p.glu) {
    FATHOM_CHECK(p.seg[0].rows == p.seg[1].rows, "gemv_q8: gate and up rows differ (", p.seg[0].rows, " vs ",
                 p.seg[1].rows, ")");
    groups = p.seg[0].rows;
  }
  a.n_groups = groups;
  // Q8_0, one token: the bulk-copy ring kernel where its stages are whole 16-byte pieces (rows of
  // cols % 256 == 0 are 272-byte multiples) and sm_90 code runs; else the shared-memory ring below.
  if (p.type == GgmlType::Q8_0 && p.n_tokens == 1 && direct_enabled() && q80_kernel() == Q80Kernel::Bulk &&
      p.cols % 256 == 0 && sm90_code_ok() && q80_smem_bytes(p.cols) <= size_t(device_info().max_smem_optin)) {
    launch_q80_one_token(a, stream);
    return;
  }
  // Q6_K, one token: the bulk-copy ring kernel where every row and 8-super-block chunk is whole
  // 16-byte pieces (cols % 2048 == 0: 1680-byte chunks) and sm_90 code runs; else the direct kernel.
  if (p.type == GgmlType::Q6_K && p.n_tokens == 1 && direct_enabled() && q6k_kernel() == Q6kKernel::Bulk &&
      p.cols % 2048 == 0 && sm90_code_ok() && q6k_bulk_fits(p.cols)) {
    launch_q6k_one_token(a, stream);
    return;
  }
  if ((p.type == GgmlType::Q4_K || p.type == GgmlType::Q6_K) && p.n_tokens == 1 && direct_enabled() &&
      !(p.type == GgmlType::Q4_K && q4k_kernel() == Q4kKernel::Ring)) {
    const DeviceInfo dev = device_info();
    // The bulk kernel's body exists only in sm_90 code (sm90_code_ok: not on a newer GPU running
    // this build's JIT-compiled compute_89 code).
    if (p.type == GgmlType::Q4_K && q4k_kernel() == Q4kKernel::Bulk && sm90_code_ok()) {
      const size_t optin = size_t(dev.max_smem_optin);
      if (q4k_bulk_stage() == 16 && bulk_smem_bytes<16, 2>(p.cols) <= optin) {
        launch_one_token(gemv_q4k_bulk_kernel<16, 2>, bulk_smem_bytes<16, 2>(p.cols), a, stream);
        return;
      }
      if (bulk_smem_bytes<kBulkSB, kBulkD>(p.cols) <= optin) {
        launch_one_token(gemv_q4k_bulk_kernel<kBulkSB, kBulkD>, bulk_smem_bytes<kBulkSB, kBulkD>(p.cols), a, stream);
        return;
      }
    }
    if (direct_smem_bytes(p.cols) <= size_t(dev.max_smem_optin)) {
      launch_one_token(p.type == GgmlType::Q6_K ? gemv_q6k_direct_kernel : gemv_q4k_pair_kernel,
                       direct_smem_bytes(p.cols), a, stream);
      return;
    }
  }
  const bool ok = dispatch_q8(p.type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    if (p.n_tokens <= 1) launch_nb<T, 1>(a, p, stream);
    else if (p.n_tokens <= 2) launch_nb<T, 2>(a, p, stream);
    else if (p.n_tokens <= 4) launch_nb<T, 4>(a, p, stream);
    else launch_nb<T, 8>(a, p, stream);
  });
  FATHOM_CHECK(ok, "gemv_q8: weight type ", ggml_type_name(p.type), " has no int8-activation kernel");
}

void gemv_q8_set_q4k_override(int kernel) { g_q4k_override.store(kernel < 0 || kernel > 2 ? -1 : kernel); }
void gemv_q8_set_q4k_stage_override(int stage16) { g_q4k_stage_override.store(stage16 < 0 || stage16 > 1 ? -1 : stage16); }
void gemv_q8_set_q80_override(int kernel) { g_q80_override.store(kernel < 0 || kernel > 1 ? -1 : kernel); }
void gemv_q8_set_q6k_override(int kernel) { g_q6k_override.store(kernel < 0 || kernel > 1 ? -1 : kernel); }

}  // namespace fathom::cuda

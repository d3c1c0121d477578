// Decode GEMV with int8 activations and dp4a (see matmul_gemv_q8.cuh for the contract).
//
// Why: the fp32-dequantizing GEMV (matmul_gemv.cu) is issue-bound on the quantized types (every
// weight is turned into a float and FMA'd: 33-50% of DRAM bandwidth, docs/perf/NOTES.md). Here a
// weight code meets an int8 x code in dp4a, four products per instruction, and the scales are
// applied once per 8..32 products.
//
// Memory path: each warp streams the raw bytes of its rows through a private ring of
// kStages shared-memory slots with 16-byte cp.async copies (coalesced whatever the block
// layout: Q6_K / Q8_0 / Q4_0 blocks are only 2-byte aligned), kStages - 1 stages in flight while
// it computes on the oldest. A stage is 1024 weights of a row: 32 tasks of 32 weights, one per
// lane. A warp owns kR = 2 rows (two rows of one matrix, or gate row r and up row r for the fused
// GLU) so every x read from shared memory serves both.
//
// x: staged once per block (per x chunk) in shared memory as int8 codes, 64-byte runs padded to
// 80 bytes (fewer bank conflicts for the lanes' 16-byte reads at 64-byte strides), plus a float2
// (d, exact sum) per 32 elements. The block quantizes it from the fp32 x itself (8 threads per
// 32-element block, shuffles for max and sum): no extra kernel and no scratch buffer.
//
// Programmatic dependent launch: the first kStages - 1 weight stages are requested before
// pdl_wait(), so the DRAM latency of the weights overlaps the previous kernel's tail; x is read
// and y written only after it.
//
// Work split (chosen at launch, see plan()): rows come in groups of kR; a group's stages may be
// split over W warps of a block (W in 1,2,4,8: small matrices), whose partials are added through
// shared memory; with W = 1 and one x chunk the grid is one wave of persistent blocks that walk
// the groups (x staged once per block, the weight ring never drains between groups).
#include "cuda/matmul_gemv_q8.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "cuda/cuda_check.cuh"
#include "cuda/pdl.cuh"
#include "fathom/error.h"

namespace fathom::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kR = 2;             // rows per warp
constexpr int kStages = 3;        // weight ring slots per row
constexpr int kStageW = 1024;     // weights of a row per stage
constexpr int kXCapBytes = 32768; // int8 x codes staged per block, all columns together

constexpr uint32_t kM4 = 0x0F0F0F0Fu;

// ---- per-type block geometry ------------------------------------------------------------------
template <GgmlType T> struct Geo;
template <> struct Geo<GgmlType::Q4_0> { static constexpr int blk = 32, bytes = 18; };
template <> struct Geo<GgmlType::Q4_1> { static constexpr int blk = 32, bytes = 20; };
template <> struct Geo<GgmlType::Q5_0> { static constexpr int blk = 32, bytes = 22; };
template <> struct Geo<GgmlType::Q5_1> { static constexpr int blk = 32, bytes = 24; };
template <> struct Geo<GgmlType::Q8_0> { static constexpr int blk = 32, bytes = 34; };
template <> struct Geo<GgmlType::Q4_K> { static constexpr int blk = 256, bytes = 144; };
template <> struct Geo<GgmlType::Q5_K> { static constexpr int blk = 256, bytes = 176; };
template <> struct Geo<GgmlType::Q6_K> { static constexpr int blk = 256, bytes = 210; };

template <GgmlType T>
constexpr int stage_bytes() { return kStageW / Geo<T>::blk * Geo<T>::bytes; }
// A stage is copied from its 16-byte-aligned floor: up to 15 bytes before and 15 after.
template <GgmlType T>
constexpr int slot_bytes() { return (stage_bytes<T>() + 30 + 15) / 16 * 16; }

// ---- small device helpers -----------------------------------------------------------------------
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

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

// Byte i (0..11) of the K-quant scale block held in three words.
__device__ __forceinline__ uint32_t kbyte(uint32_t s0, uint32_t s1, uint32_t s2, int i) {
  const uint32_t w = i < 4 ? s0 : (i < 8 ? s1 : s2);
  return (w >> (8 * (i & 3))) & 0xFFu;
}
// ggml get_scale_min_k4 for sub-block j.
__device__ __forceinline__ void k4_sm(uint32_t s0, uint32_t s1, uint32_t s2, int j, float& sc,
                                      float& m) {
  if (j < 4) {
    sc = float(kbyte(s0, s1, s2, j) & 63u);
    m = float(kbyte(s0, s1, s2, j + 4) & 63u);
  } else {
    sc = float((kbyte(s0, s1, s2, j + 4) & 0xFu) | ((kbyte(s0, s1, s2, j - 4) >> 6) << 4));
    m = float((kbyte(s0, s1, s2, j + 4) >> 4) | ((kbyte(s0, s1, s2, j) >> 6) << 4));
  }
}

// x view of one stage: codes of column c at xq + c * xq_cs (use xpad on the stage-local index),
// (d, sum) of 32-element block b of column c at xd[c * xd_cs + b].
struct XView {
  const int8_t* xq;
  int xq_cs;
  const float2* xd;
  int xd_cs;
};

__device__ __forceinline__ uint4 x16(const XView& x, int c, int k) {
  return *reinterpret_cast<const uint4*>(x.xq + c * x.xq_cs + xpad(k));
}
__device__ __forceinline__ uint2 x8(const XView& x, int c, int k) {
  return *reinterpret_cast<const uint2*>(x.xq + c * x.xq_cs + xpad(k));
}

// ---- per-type task: lane's 32 weights of a stage, dot with NB columns ------------------------
// sw: the stage's first byte in shared memory; t: task 0..31. acc[c] += w . x[c] over the task.
template <GgmlType T, int NB>
struct Task;

// Legacy 32-element blocks: task t = block t of the stage.
template <int NB>
__device__ __forceinline__ void legacy_dot(const uint32_t (&lo)[4], const uint32_t (&hi)[4],
                                           const XView& x, int t, int (&dot)[NB]) {
#pragma unroll
  for (int c = 0; c < NB; ++c) {
    const uint4 a = x16(x, c, 32 * t), b = x16(x, c, 32 * t + 16);
    int s = dp4a(lo[0], a.x, 0);
    s = dp4a(lo[1], a.y, s);
    s = dp4a(lo[2], a.z, s);
    s = dp4a(lo[3], a.w, s);
    s = dp4a(hi[0], b.x, s);
    s = dp4a(hi[1], b.y, s);
    s = dp4a(hi[2], b.z, s);
    dot[c] = dp4a(hi[3], b.w, s);
  }
}

template <int NB>
struct Task<GgmlType::Q4_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 18 * t;
    const float d = half_at(b);
    uint32_t q[4], lo[4], hi[4];
    lds_words<4>(b + 2, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) { lo[i] = q[i] & kM4; hi[i] = (q[i] >> 4) & kM4; }
    int dot[NB];
    legacy_dot<NB>(lo, hi, x, t, dot);
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const float2 xd = x.xd[c * x.xd_cs + t];
      acc[c] += d * (xd.x * float(dot[c]) - 8.0f * xd.y);
    }
  }
};

template <int NB>
struct Task<GgmlType::Q4_1, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 20 * t;
    const float d = half_at(b), m = half_at(b + 2);
    uint32_t q[4], lo[4], hi[4];
    lds_words<4>(b + 4, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) { lo[i] = q[i] & kM4; hi[i] = (q[i] >> 4) & kM4; }
    int dot[NB];
    legacy_dot<NB>(lo, hi, x, t, dot);
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const float2 xd = x.xd[c * x.xd_cs + t];
      acc[c] += d * xd.x * float(dot[c]) + m * xd.y;
    }
  }
};

template <int NB>
struct Task<GgmlType::Q5_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 22 * t;
    const float d = half_at(b);
    uint32_t qh[1], q[4], lo[4], hi[4];
    lds_words<1>(b + 2, qh);
    lds_words<4>(b + 6, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      lo[i] = (q[i] & kM4) | spread4(qh[0] >> (4 * i));
      hi[i] = ((q[i] >> 4) & kM4) | spread4(qh[0] >> (16 + 4 * i));
    }
    int dot[NB];
    legacy_dot<NB>(lo, hi, x, t, dot);
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const float2 xd = x.xd[c * x.xd_cs + t];
      acc[c] += d * (xd.x * float(dot[c]) - 16.0f * xd.y);
    }
  }
};

template <int NB>
struct Task<GgmlType::Q5_1, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 24 * t;
    const float d = half_at(b), m = half_at(b + 2);
    uint32_t qh[1], q[4], lo[4], hi[4];
    lds_words<1>(b + 4, qh);
    lds_words<4>(b + 8, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      lo[i] = (q[i] & kM4) | spread4(qh[0] >> (4 * i));
      hi[i] = ((q[i] >> 4) & kM4) | spread4(qh[0] >> (16 + 4 * i));
    }
    int dot[NB];
    legacy_dot<NB>(lo, hi, x, t, dot);
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const float2 xd = x.xd[c * x.xd_cs + t];
      acc[c] += d * xd.x * float(dot[c]) + m * xd.y;
    }
  }
};

template <int NB>
struct Task<GgmlType::Q8_0, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* b = sw + 34 * t;
    const float d = half_at(b);
    uint32_t q[8];
    lds_words<8>(b + 2, q);
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      const uint4 a = x16(x, c, 32 * t), e = x16(x, c, 32 * t + 16);
      int s = dp4a(q[0], a.x, 0);
      s = dp4a(q[1], a.y, s);
      s = dp4a(q[2], a.z, s);
      s = dp4a(q[3], a.w, s);
      s = dp4a(q[4], e.x, s);
      s = dp4a(q[5], e.y, s);
      s = dp4a(q[6], e.z, s);
      s = dp4a(q[7], e.w, s);
      acc[c] += d * x.xd[c * x.xd_cs + t].x * float(s);
    }
  }
};

// Q4_K / Q5_K: task t = super-block t / 8 of the stage, 16-byte piece t % 8 of its 128 code
// bytes: piece (p, hh) holds code bytes 32 p + 16 hh .. +15, whose low nibbles are elements
// 64 p + 16 hh + b (sub-block 2p) and high nibbles 64 p + 32 + 16 hh + b (sub-block 2p + 1).
// The min terms use whole 32-element sums of x, so only the hh = 0 lane adds them.
template <int NB>
__device__ __forceinline__ void k_dot(const uint32_t (&lo)[4], const uint32_t (&hi)[4], uint4 hdr,
                                      const XView& x, int t, float (&acc)[NB]) {
  const int j = t >> 3, p = (t & 7) >> 1, hh = t & 1;
  const float d = half_lo(hdr.x), dmin = half_hi(hdr.x);
  float sc0, m0, sc1, m1;
  k4_sm(hdr.y, hdr.z, hdr.w, 2 * p, sc0, m0);
  k4_sm(hdr.y, hdr.z, hdr.w, 2 * p + 1, sc1, m1);
  const int k_lo = 256 * j + 64 * p + 16 * hh;
  const int b_lo = 8 * j + 2 * p;
#pragma unroll
  for (int c = 0; c < NB; ++c) {
    const uint4 a = x16(x, c, k_lo), e = x16(x, c, k_lo + 32);
    int s0 = dp4a(lo[0], a.x, 0);
    s0 = dp4a(lo[1], a.y, s0);
    s0 = dp4a(lo[2], a.z, s0);
    s0 = dp4a(lo[3], a.w, s0);
    int s1 = dp4a(hi[0], e.x, 0);
    s1 = dp4a(hi[1], e.y, s1);
    s1 = dp4a(hi[2], e.z, s1);
    s1 = dp4a(hi[3], e.w, s1);
    const float2 x0 = x.xd[c * x.xd_cs + b_lo], x1 = x.xd[c * x.xd_cs + b_lo + 1];
    float v = d * (sc0 * x0.x * float(s0) + sc1 * x1.x * float(s1));
    if (hh == 0) v -= dmin * (m0 * x0.y + m1 * x1.y);
    acc[c] += v;
  }
}

template <int NB>
struct Task<GgmlType::Q4_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* sb = sw + 144 * (t >> 3);  // 16-byte aligned: 144 = 9 x 16
    const uint4 hdr = *reinterpret_cast<const uint4*>(sb);
    const uint4 qv = *reinterpret_cast<const uint4*>(sb + 16 + 16 * (t & 7));
    const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
    uint32_t lo[4], hi[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) { lo[i] = q[i] & kM4; hi[i] = (q[i] >> 4) & kM4; }
    k_dot<NB>(lo, hi, hdr, x, t, acc);
  }
};

template <int NB>
struct Task<GgmlType::Q5_K, NB> {
  static __device__ __forceinline__ void run(const uint8_t* sw, int t, const XView& x, float (&acc)[NB]) {
    const uint8_t* sb = sw + 176 * (t >> 3);  // 16-byte aligned: 176 = 11 x 16
    const int p = (t & 7) >> 1, hh = t & 1;
    const uint4 hdr = *reinterpret_cast<const uint4*>(sb);
    const uint4 hv = *reinterpret_cast<const uint4*>(sb + 16 + 16 * hh);
    const uint4 qv = *reinterpret_cast<const uint4*>(sb + 48 + 16 * (t & 7));
    const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
    const uint32_t h[4] = {hv.x, hv.y, hv.z, hv.w};
    uint32_t lo[4], hi[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
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
        const uint2 xv = x8(x, c, k0 + 32 * r);
        int s = dp4a(q[r][0], xv.x, 0);
        s = dp4a(q[r][1], xv.y, s);
        int o = dp4a(0x20202020u, xv.x, 0);
        o = dp4a(0x20202020u, xv.y, o);
        v += sc[r] * x.xd[c * x.xd_cs + b0 + r].x * float(s - o);
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
  int64_t n_groups;
  int ksplit;         // W warps per group
  int persistent;     // grid-stride over groups (W == 1, one x chunk)
  int xchunk;         // columns per x chunk (== cols when one chunk; else a multiple of kStageW)
};

// Row r (0..kR-1) of group g: pointer and validity.
__device__ __forceinline__ void group_rows(const Args& a, int64_t g, const uint8_t* (&w)[kR],
                                           bool (&ok)[kR]) {
  if (a.glu) {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      ok[r] = g < a.seg[0].rows;
      w[r] = a.seg[r].w + (ok[r] ? g : 0) * a.row_bytes;
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
  }
}

__device__ __forceinline__ float silu_f(float g) { return g / (1.0f + expf(-g)); }
__device__ __forceinline__ float gelu_tanh_f(float g) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
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

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kThreads) gemv_q8_kernel(const __grid_constant__ Args a) {
  extern __shared__ uint4 q8_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(q8_smem4);
  constexpr int kSlot = slot_bytes<T>();
  constexpr int kSB = stage_bytes<T>();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint8_t* ring = smem + warp * (kStages * kR * kSlot);
  int8_t* xq = reinterpret_cast<int8_t*>(smem + kWarps * kStages * kR * kSlot);
  const int xq_cs = xpad_len(a.xchunk);
  float2* xd = reinterpret_cast<float2*>(xq + NB * xq_cs);
  const int xd_cs = a.xchunk / 32;
  float* part = reinterpret_cast<float*>(xd + NB * xd_cs);  // kWarps * kR * NB partials

  const int W = a.ksplit, G = kWarps / W;
  const int gw = warp / W, slice = warp - gw * W;
  const int64_t n_stages = (a.cols + kStageW - 1) / kStageW;
  const int64_t ns_w = (n_stages - slice + W - 1) / W;  // stages of a group this warp computes
  const int64_t g0 = int64_t(blockIdx.x) * G + gw;
  const int64_t gstep = a.persistent ? int64_t(gridDim.x) * G : 0;
  int64_t n_grp = 0;
  if (g0 < a.n_groups) n_grp = a.persistent ? (a.n_groups - 1 - g0) / gstep + 1 : 1;
  const int64_t n_items = ns_w > 0 ? n_grp * ns_w : 0;

  // Item i: group g0 + (i / ns_w) * gstep, stage slice + W * (i % ns_w).
  auto issue = [&](int64_t i) {
    const int64_t gi = i / ns_w;
    const int64_t s = slice + W * (i - gi * ns_w);
    const uint8_t* wr[kR];
    bool ok[kR];
    group_rows(a, g0 + gi * gstep, wr, ok);
    const int64_t w_in = (a.cols - s * kStageW) < kStageW ? (a.cols - s * kStageW) : kStageW;
    const int64_t nbytes = w_in / Geo<T>::blk * Geo<T>::bytes;
    uint8_t* slot = ring + int(i % kStages) * (kR * kSlot);
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (!ok[r]) continue;
      const uintptr_t src = reinterpret_cast<uintptr_t>(wr[r]) + uintptr_t(s * kSB);
      const uintptr_t a0 = src & ~uintptr_t(15);
      const int n16 = int((src + uintptr_t(nbytes) + 15 - a0) >> 4);
      for (int k = lane; k < n16; k += 32)
        cp_async16(slot + r * kSlot + 16 * k, reinterpret_cast<const void*>(a0 + 16u * unsigned(k)));
    }
  };

  int64_t issued = 0;
#pragma unroll
  for (int k = 0; k < kStages - 1; ++k) {
    if (issued < n_items) issue(issued++);
    cp_async_commit();
  }

  pdl_wait();  // x is written by the previous kernel; y may still be read by it

  float acc[kR][NB];
  const int n_chunks = int((a.cols + a.xchunk - 1) / a.xchunk);
  int64_t it = 0;
  for (int ci = 0; ci < n_chunks; ++ci) {
    const int64_t x0 = int64_t(ci) * a.xchunk;
    const int xc = int(a.cols - x0 < a.xchunk ? a.cols - x0 : a.xchunk);
    if (ci > 0) __syncthreads();  // every warp is done with the previous chunk's x
    {
      // Quantize x[c][x0 .. x0 + xc) for every column into the stage: 8 threads per 32 elements.
      const int per_c = xc / 4;
      const int total = NB * per_c;
      const int total_r = (total + 31) & ~31;
      for (int i = threadIdx.x; i < total_r; i += kThreads) {
        const bool act = i < total;
        const int c = act ? i / per_c : 0;
        const int e4 = act ? i - c * per_c : 0;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (act && c < a.n_tokens)
          v = __ldg(reinterpret_cast<const float4*>(a.x + int64_t(c) * a.cols + x0) + e4);
        float am = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
        float sm = (v.x + v.y) + (v.z + v.w);
#pragma unroll
        for (int off = 1; off < 8; off <<= 1) {
          am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, off));
          sm += __shfl_xor_sync(0xffffffffu, sm, off);
        }
        const float inv = am > 0.0f ? 127.0f / am : 0.0f;
        const uint32_t b0 = uint32_t(__float2int_rn(v.x * inv)) & 0xFFu;
        const uint32_t b1 = uint32_t(__float2int_rn(v.y * inv)) & 0xFFu;
        const uint32_t b2 = uint32_t(__float2int_rn(v.z * inv)) & 0xFFu;
        const uint32_t b3 = uint32_t(__float2int_rn(v.w * inv)) & 0xFFu;
        if (act) {
          *reinterpret_cast<uint32_t*>(xq + c * xq_cs + xpad(4 * e4)) = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24);
          if ((e4 & 7) == 0) xd[c * xd_cs + (e4 >> 3)] = make_float2(am * (1.0f / 127.0f), sm);
        }
      }
    }
    __syncthreads();

    // This warp's items whose stage lies in chunk ci.
    while (it < n_items) {
      const int64_t gi = it / ns_w;
      const int64_t sidx = it - gi * ns_w;
      const int64_t s = slice + W * sidx;
      if (s * kStageW >= x0 + xc) break;  // next chunk
      if (sidx == 0) {
#pragma unroll
        for (int r = 0; r < kR; ++r)
#pragma unroll
          for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;
      }
      if (issued < n_items) issue(issued++);
      cp_async_commit();
      cp_async_wait<kStages - 1>();
      __syncwarp();
      const uint8_t* slot = ring + int(it % kStages) * (kR * kSlot);
      const int64_t g = g0 + gi * gstep;
      const uint8_t* wr[kR];
      bool ok[kR];
      group_rows(a, g, wr, ok);
      const int64_t w_in = (a.cols - s * kStageW) < kStageW ? (a.cols - s * kStageW) : kStageW;
      const int n_tasks = int(w_in / 32);
      const int kx = int(s * kStageW - x0);  // stage start within the x chunk (multiple of 1024)
      XView xv{xq + (kx >> 6) * 80, xq_cs, xd + (kx >> 5), xd_cs};
      if (lane < n_tasks) {
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          if (!ok[r]) continue;
          const uintptr_t src = reinterpret_cast<uintptr_t>(wr[r]) + uintptr_t(s * kSB);
          const uint8_t* sw = slot + r * kSlot + int(src & 15u);
          Task<T, NB>::run(sw, lane, xv, acc[r]);
        }
      }
      __syncwarp();  // the slot is refilled by a later issue
      ++it;
      if (W == 1 && sidx == ns_w - 1) {
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
        if (lane < NB) {
#pragma unroll
          for (int c = 0; c < NB; ++c)
            if (c == lane) {
              store_group<NB>(a, g, 0, c, acc[0][c], acc[1][c]);
              if (!a.glu) store_group<NB>(a, g, 1, c, acc[0][c], acc[1][c]);
            }
        }
      }
    }
  }
  cp_async_wait<0>();
  pdl_trigger();

  if (W > 1) {
    // Non-persistent: this warp had (at most) one group; add the W slices' partials.
    if (n_items == 0) {
#pragma unroll
      for (int r = 0; r < kR; ++r)
#pragma unroll
        for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;
    }
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

// ---- launch planning ----------------------------------------------------------------------------
template <GgmlType T>
constexpr bool is_q8_type() {
  return T == GgmlType::Q4_0 || T == GgmlType::Q4_1 || T == GgmlType::Q5_0 || T == GgmlType::Q5_1 ||
         T == GgmlType::Q8_0 || T == GgmlType::Q4_K || T == GgmlType::Q5_K || T == GgmlType::Q6_K;
}

template <typename F>
bool dispatch_q8(GgmlType t, F&& f) {
  switch (t) {
    case GgmlType::Q4_0: f(std::integral_constant<GgmlType, GgmlType::Q4_0>{}); return true;
    case GgmlType::Q4_1: f(std::integral_constant<GgmlType, GgmlType::Q4_1>{}); return true;
    case GgmlType::Q5_0: f(std::integral_constant<GgmlType, GgmlType::Q5_0>{}); return true;
    case GgmlType::Q5_1: f(std::integral_constant<GgmlType, GgmlType::Q5_1>{}); return true;
    case GgmlType::Q8_0: f(std::integral_constant<GgmlType, GgmlType::Q8_0>{}); return true;
    case GgmlType::Q4_K: f(std::integral_constant<GgmlType, GgmlType::Q4_K>{}); return true;
    case GgmlType::Q5_K: f(std::integral_constant<GgmlType, GgmlType::Q5_K>{}); return true;
    case GgmlType::Q6_K: f(std::integral_constant<GgmlType, GgmlType::Q6_K>{}); return true;
    default: return false;
  }
}

struct DeviceInfo {
  int sm_count = 0;
  int max_smem_optin = 0;
};
DeviceInfo device_info() {
  static thread_local int cached_dev = -1;
  static thread_local DeviceInfo info;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_dev) {
    CUDA_CHECK(cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&info.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cached_dev = dev;
  }
  return info;
}

template <GgmlType T, int NB>
void launch_nb(Args a, const GemvQ8Params& p, cudaStream_t stream) {
  const DeviceInfo dev = device_info();
  const int xcap_cols = (kXCapBytes / NB) / kStageW * kStageW;
  a.xchunk = int(a.cols <= xcap_cols ? a.cols : xcap_cols);
  const size_t ring = size_t(kWarps) * kStages * kR * slot_bytes<T>();
  const size_t smem = ring + size_t(NB) * xpad_len(a.xchunk) + size_t(NB) * (a.xchunk / 32) * sizeof(float2) +
                      size_t(kWarps) * kR * NB * sizeof(float);
  FATHOM_CHECK(smem <= size_t(dev.max_smem_optin), "gemv_q8: ", smem, " bytes of shared memory exceed the device's ",
               dev.max_smem_optin);
  auto kernel = gemv_q8_kernel<T, NB>;
  // Opt-in shared memory and the blocks per SM, per (instantiation, smem size): host-side cache.
  struct Occ { int blocks = 0; };
  static std::mutex mu;
  static std::unordered_map<size_t, Occ> occ_cache;
  int bps = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto itc = occ_cache.find(smem);
    if (itc == occ_cache.end()) {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
      int b = 0;
      CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kThreads, smem));
      itc = occ_cache.emplace(smem, Occ{b > 0 ? b : 1}).first;
    }
    bps = itc->second.blocks;
  }
  const int64_t n_stages = (a.cols + kStageW - 1) / kStageW;
  const int64_t wave_warps = int64_t(dev.sm_count) * bps * kWarps;
  // K split: the smallest W (<= stages per row) that gives about a wave of warps.
  int W = 1;
  while (W < kWarps && 2 * W <= n_stages && a.n_groups * W < wave_warps) W *= 2;
  a.ksplit = W;
  const bool one_chunk = a.xchunk >= a.cols;
  int64_t grid;
  if (W == 1 && one_chunk) {
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

}  // namespace

bool gemv_q8_supports(GgmlType type, int64_t n_tokens) {
  static const bool off = [] {
    const char* e = std::getenv("FATHOM_GEMV_Q8");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (off || n_tokens < 1 || n_tokens > kGemvQ8MaxTokens) return false;
  return dispatch_q8(type, [](auto) {});
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
  const bool ok = dispatch_q8(p.type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    if (p.n_tokens <= 1) launch_nb<T, 1>(a, p, stream);
    else if (p.n_tokens <= 2) launch_nb<T, 2>(a, p, stream);
    else if (p.n_tokens <= 4) launch_nb<T, 4>(a, p, stream);
    else launch_nb<T, 8>(a, p, stream);
  });
  FATHOM_CHECK(ok, "gemv_q8: weight type ", ggml_type_name(p.type), " has no int8-activation kernel");
}

}  // namespace fathom::cuda

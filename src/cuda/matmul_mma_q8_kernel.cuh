// Device side of the tensor-core small-batch matmul (matmul_mma_q8.cu, contract in
// matmul_mma_q8.cuh): the kernel template, its per-type stage code and the geometry the host
// planner needs. The kernels are instantiated one weight type per file
// (matmul_mma_q8_inst_<type>.cu: each takes ~20 s of nvcc, all of them in one file 2.5 min) and
// reached through the mmq_kernel_* / mmq_launch_* functions declared at the end.
//
// Layout of the work (one CTA per SM: 16 warps x one m16 tile each at <= 16 tokens, 8 warps x two
// above; kMT / kWarpsOf below):
//   - a tile is 256 weight rows; with a fused GLU, 128 gate rows and the same 128 up rows, paired so
//     that the gate and up accumulators of an output row sit in one thread (issue_stage), and
//     act(gate) * up is formed in registers;
//   - the K range is split S ways (split-K); CTA c takes split c % S and the tiles c / S,
//     c / S + G, ... (G = grid / S): persistent, so the weight ring never drains between tiles and
//     x is quantized once per CTA for its K range;
//   - x[all tokens][K range] is quantized once into shared memory as int8 rows, 2 planes per token
//     interleaved (row 2t = plane 1 of token t, row 2t + 1 = plane 2): the mma's 8 columns of an
//     n-tile are 4 tokens x 2 planes, so the accumulator pair (c0, c1) a thread holds is the two
//     planes of one token and combines in registers (254 c0 + c1);
//   - the weights stream through a ring of stages (256 rows x 256 k of raw GGUF bytes each) with
//     16-byte cp.async, the first stages requested before griddepcontrol.wait (PDL);
//   - split partials go to the workspace; the last CTA to finish a tile (arrival counter) adds the
//     S partials in split order (bit-reproducible) and applies bias / residual / activation.
//
// Fragments (PTX ISA, mma.m16n8k32 .s8; g = lane / 4, t = lane % 4): A regs = rows (g, g+8) x
// k (4t.., 16+4t..) in the order a0 (g, 4t), a1 (g+8, 4t), a2 (g, 16+4t), a3 (g+8, 16+4t); B regs
// = k (4t.., 16+4t..) of column g; C = rows (g, g+8) x columns (2t, 2t+1). With the natural k order
// every type's codes for a fragment register are 4 consecutive bytes of its block (nibbles of
// Q4 / Q5 / Q6 code bytes), so no repack is needed: Q4_K / Q5_K code bytes are 16-byte aligned
// runs and come in by ldmatrix; the 2-byte-aligned types (Q4_0 Q5_0 Q8_0 Q6_K) use 32-bit shared
// loads, funnel-shifted where a word straddles. The mma accumulator starts at 0x4B400000, so the
// int32 result read as fp32 is 1.5 * 2^23 + dot exactly (|dot| < 2^22): int-to-float for free.
#pragma once

#include <cuda.h>  // CUtensorMap (a type only: nothing links the driver library)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/matmul_mma_q8.cuh"
#include "cuda/activation_fn.cuh"
#include "cuda/pdl.cuh"
#include "cuda/ptx.cuh"
#include "cuda/x_planes.cuh"

namespace fathom::cuda::mmq {

constexpr int kTileRows = 256;  // weight rows per tile: 16 warps x 1 m16 tile, or 8 x 2
// m16 tiles per warp: 1 (16 warps, <= 128 registers: 4 warps per scheduler to hide the ldmatrix /
// mma / shared-load chains) at <= 16 tokens; 2 (8 warps) at 32-64 tokens, whose accumulators and
// B fragments need 200-255 registers. (8 warps everywhere measured ~1 instruction per SM cycle at
// 1 token, a quarter of the issue rate: docs/perf/mma_q8.md.)
// BF: the bf16 variant (Q4_K, bf_stage below) keeps one m16 tile per warp at every token count: its
// accumulators are the only per-token registers (no x-scale or plane registers).
template <int NT, bool BF = false> constexpr int kMT = (NT <= 4 || BF) ? 1 : 2;
template <int NT, bool BF = false> constexpr int kWarpsOf = 8 * 2 / kMT<NT, BF>;
template <int NT, bool BF = false> constexpr int kThreadsOf = 32 * kWarpsOf<NT, BF>;
constexpr int kStageK = 256;    // weights of a row per pipeline stage
constexpr int kCounters = int(kMmaQ8WorkspaceCounterBytes / sizeof(int));
constexpr int kMaxSplits = 64;
constexpr int kPlaneScale = kXPlaneScale;  // x = u (254 q1 + q2), x_planes.cuh
constexpr int kAccBias = 0x4B400000;      // fp32 bits of 1.5 * 2^23
constexpr float kAccBiasF = 12582912.0f;  // 1.5 * 2^23
constexpr uint32_t kM4 = 0x0F0F0F0Fu;

// ---- per-type stage geometry ----------------------------------------------------------------
// bytes: one row's 256 weights; copy: bytes copied per row and stage (Q6_K: from the 16-byte floor
// of its 2-byte-aligned super-block, 14 pieces cover any offset); pitch: shared-memory row pitch,
// an odd multiple of 16 bytes so 8 consecutive rows' 16-byte pieces hit distinct banks.
template <GgmlType T> struct Fmt;
template <> struct Fmt<GgmlType::Q4_0> { static constexpr int bytes = 144, copy = 144, pitch = 144; };
template <> struct Fmt<GgmlType::Q4_1> { static constexpr int bytes = 160, copy = 160, pitch = 176; };
template <> struct Fmt<GgmlType::Q5_0> { static constexpr int bytes = 176, copy = 176, pitch = 176; };
template <> struct Fmt<GgmlType::Q5_1> { static constexpr int bytes = 192, copy = 192, pitch = 208; };
template <> struct Fmt<GgmlType::Q8_0> { static constexpr int bytes = 272, copy = 272, pitch = 272; };
template <> struct Fmt<GgmlType::Q4_K> { static constexpr int bytes = 144, copy = 144, pitch = 144; };
template <> struct Fmt<GgmlType::Q5_K> { static constexpr int bytes = 176, copy = 176, pitch = 176; };
template <> struct Fmt<GgmlType::Q6_K> { static constexpr int bytes = 210, copy = 224, pitch = 240; };

// Ring stages: as many 256-row stages as fit a weight budget (less at many tokens, where x takes
// more shared memory), 2..4. One stage is 36-70 KB, far more than the ~17 KB per SM in flight that
// the DRAM latency needs, so 2 already keep the memory busy; the third smooths the tile changes.
template <GgmlType T, int NT>
constexpr int ring_stages() {
  constexpr int budget = NT >= 8 ? 100 * 1024 : 128 * 1024;
  constexpr int s = budget / (kTileRows * Fmt<T>::pitch);
  return s < 2 ? 2 : s > 4 ? 4 : s;
}
template <GgmlType T, int NT>
constexpr size_t ring_bytes() { return size_t(ring_stages<T, NT>()) * kTileRows * Fmt<T>::pitch; }
// The bf16 variant's rings (mma_q8_bf_kernel): one per warp, D slots of its 16 rows, then the
// warps' D mbarriers. A row's slot holds one tensor-map box: the stage's super-block, 144 bytes of
// Q4_K; for Q6_K 240 bytes from the 16-byte floor of the 210-byte super-block (a tile copy's inner
// start must be 16-byte aligned on Hopper, else the copy traps: the block then sits at an even
// offset <= 14 of the row; 240, an odd multiple of 16, keeps the rows' 4-byte loads conflict-free).
// Bytes past the row arrive as zeros. D by the x the token
// count needs beside it within the 227 KB of an H100 / H200 with the 18 KB of decoded scales.
// Q4_K: 8 tokens D 4 (a 2-split plan of a 4096-column row), 16 tokens D 3; 32 tokens D 2, so that
// an 8-split plan of a 14336-column row fits (with D 3 it needed 14 splits: 42.2 us on 4096 x 14336
// against 37.1 for the CTA ring, device_s17d.sh), 64 tokens D 2. Q6_K (61 KB per depth): D 3 at
// 8 tokens, else 2.
template <GgmlType T> struct BfFmt;
template <> struct BfFmt<GgmlType::Q4_K> { static constexpr int box = 144, block = 144; };
template <> struct BfFmt<GgmlType::Q6_K> { static constexpr int box = 240, block = 210; };
// The box's inner start of 256-weight stage ks (bytes) and the super-block's offset in the slot row.
// (0 for Q4_K, whose 144-byte blocks keep 16-byte alignment.)
template <GgmlType T>
__host__ __device__ constexpr int bf_box_x(int ks) { return (ks * BfFmt<T>::block) & ~15; }
template <GgmlType T>
__host__ __device__ constexpr int bf_box_off(int ks) { return (ks * BfFmt<T>::block) & 15; }
static_assert(bf_box_off<GgmlType::Q4_K>(7) == 0 && bf_box_off<GgmlType::Q6_K>(7) + 210 <= BfFmt<GgmlType::Q6_K>::box,
              "the box covers the super-block at its offset");
template <GgmlType T, int NT>
constexpr int bf_ring_depth() {
  if constexpr (T == GgmlType::Q6_K) return NT <= 2 ? 3 : 2;
  else return NT <= 2 ? 4 : NT <= 4 ? 3 : 2;
}
constexpr int kBfWarps = 16;
template <GgmlType T>
constexpr int bf_warp_slot() { return 16 * BfFmt<T>::box; }  // 2304 (Q4_K), 3840 (Q6_K): multiples of 128
template <GgmlType T, int NT>
constexpr size_t bf_ring_bytes() {
  return size_t(kBfWarps) * bf_ring_depth<T, NT>() * (bf_warp_slot<T>() + sizeof(unsigned long long));
}

// x in shared memory for a K range of kr weights: 8 NT rows (2 planes x 4 NT tokens) of kr + 16
// bytes (the 16 make the pitch an odd multiple of 16: conflict-free ldmatrix), then (u, sum) per
// token and 32-block, kr / 32 + 2 per token (even: 16-byte aligned pairs; +2 spreads the 4 tokens
// a warp reads over distinct banks).
__host__ __device__ constexpr int x_pitch(int kr) { return kr + 16; }
__host__ __device__ constexpr int xs_stride(int kr) { return kr / 32 + 2; }
__host__ __device__ constexpr size_t x_bytes(int nt, int kr) {
  return size_t(8 * nt) * size_t(x_pitch(kr)) + size_t(4 * nt) * size_t(xs_stride(kr)) * 8;
}
// The bf16 variant's x in the same bytes: 4 NT token rows of kr bf16 + 16 bytes (an odd multiple of
// 16: conflict-free ldmatrix), then per token the bf16 sums of its 32-blocks, rows of kr / 16 + 16
// bytes. 4 NT (2 kr + 16 + kr / 16 + 16) <= x_bytes(NT, kr), so the planner's sizes serve both.
__host__ __device__ constexpr int xbf_pitch(int kr) { return 2 * kr + 16; }
__host__ __device__ constexpr int xbf_sum_pitch(int kr) { return kr / 16 + 16; }
static_assert(size_t(4 * 2) * (xbf_pitch(256) + xbf_sum_pitch(256)) <= x_bytes(2, 256), "bf16 x must fit the int8 x bytes");
static_assert(size_t(4 * 16) * (xbf_pitch(65536) + xbf_sum_pitch(65536)) <= x_bytes(16, 65536), "bf16 x must fit the int8 x bytes");

// ---- small device helpers -----------------------------------------------------------------------
// smem_u32, cp_async16, cp_async_commit / wait, ldsm_x4 / x2: ptx.cuh.
// D = A B + 0x4B400000 (each int32 read as fp32 is 1.5 * 2^23 + dot).
__device__ __forceinline__ void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int (&d)[4]) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%10,%10,%10};"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(kAccBias));
}
__device__ __forceinline__ void mma_k16(uint32_t a0, uint32_t a1, uint32_t b0, int (&d)[4]) {
  asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a0), "r"(a1), "r"(b0), "r"(kAccBias));
}
// The two planes of rows g (x) and g + 8 (y): 254 dot1 + dot2, exact ints < 2^22 each.
__device__ __forceinline__ float2 planes(const int (&d)[4]) {
  float2 v;
  v.x = fmaf(float(kPlaneScale), __int_as_float(d[0]) - kAccBiasF, __int_as_float(d[1]) - kAccBiasF);
  v.y = fmaf(float(kPlaneScale), __int_as_float(d[2]) - kAccBiasF, __int_as_float(d[3]) - kAccBiasF);
  return v;
}

__device__ __forceinline__ float half_at(const uint8_t* p) {  // 2-byte aligned shared address
  return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}
// A byte value (< 2^23) of `w` as float without I2F (quarter rate): 2^23 + b, minus 2^23.
__device__ __forceinline__ float ubyte_f(uint32_t w, int byte) {
  return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u + unsigned(byte))) - 8388608.0f;
}
// Signed byte `byte` of w as float (shift to the top, arithmetic shift back, 1.5 * 2^23 bias).
__device__ __forceinline__ float sbyte_f(uint32_t w, int byte) {
  const int v = int(w << (24 - 8 * byte)) >> 24;
  return __int_as_float(kAccBias + v) - kAccBiasF;
}
// 32-bit little-endian word at a shared address that is 4-byte aligned (A) or 2 mod 4 (!A).
template <bool A>
__device__ __forceinline__ uint32_t lds32(const uint8_t* p) {
  if constexpr (A) {
    return *reinterpret_cast<const uint32_t*>(p);
  } else {
    const uint32_t* q = reinterpret_cast<const uint32_t*>(p - 2);
    return __funnelshift_r(q[0], q[1], 16);
  }
}
// Bits 0..3 of v to bit 4 of bytes 0..3 (the Q5_0 / Q5_1 high bits).
__device__ __forceinline__ uint32_t spread4(uint32_t v) {
  return (((v & 0xFu) * 0x00204081u) & 0x01010101u) << 4;
}
// Unsigned codes c (< 128 per byte) minus `off` as int8, byte-wise without borrows:
// (c + 128 - off) stays below 256, and flipping bit 7 subtracts 128.
template <int Off>
__device__ __forceinline__ uint32_t minus(uint32_t c) {
  return (c + uint32_t(128 - Off) * 0x01010101u) ^ 0x80808080u;
}

// Q4_K / Q5_K scales and mins of sub-blocks 2p, 2p+1 (ggml get_scale_min_k4), from the header's
// 12 scale bytes (hdr.y, hdr.z, hdr.w): 6-bit values as the low two bytes of sc and mn.
template <int P>
__device__ __forceinline__ void k4_pair(const uint4& hdr, uint32_t& sc, uint32_t& mn) {
  constexpr int sel = (P & 1) ? 16 : 0;
  const uint32_t Y = hdr.y >> sel, Z = hdr.z >> sel, W = hdr.w >> sel;
  if constexpr (P < 2) {
    sc = Y & 0x3F3Fu;
    mn = Z & 0x3F3Fu;
  } else {
    sc = (W & 0x0F0Fu) | ((Y >> 2) & 0x3030u);
    mn = ((W >> 4) & 0x0F0Fu) | ((Z >> 2) & 0x3030u);
  }
}

// ---- x in shared memory -------------------------------------------------------------------------
struct XCtx {
  uint32_t xq_s;    // shared address of plane row 0 at the CTA's first k (bf16: token row 0)
  uint32_t lane_b;  // this lane's ldmatrix row/column offset
  int pitch;        // bytes per plane row (bf16: per token row)
  const float2* xs; // (u, sum) of token t, 32-block b (CTA-local): xs[t * stride + b]
  int stride;
  const uint8_t* sums;  // bf16 only: bf16 sum of token t's 32-block b at sums + t * sum_pitch + 2 b
  int sum_pitch;
};

// B fragments of n-tiles 2 jp and 2 jp + 1 (NT == 1: tile 0 only) for the 32 k at CTA-local kx:
// b[jj][0] = k 4t.., b[jj][1] = k 16+4t.. of column g of tile 2 jp + jj (plane row 8 (2 jp + jj) + g).
template <int NT>
__device__ __forceinline__ void load_b2(const XCtx& x, int kx, int jp, uint32_t (&b)[2][2]) {
  const uint32_t addr = x.xq_s + x.lane_b + uint32_t(kx) + uint32_t(16 * jp * x.pitch);
  if constexpr (NT == 1) {
    ldsm_x2(addr, b[0][0], b[0][1]);
    b[1][0] = b[1][1] = 0u;
  } else {
    ldsm_x4(addr, b[0][0], b[0][1], b[1][0], b[1][1]);
  }
}
// n-tiles in pairs: (NT + 1) / 2 pairs of min(NT, 2) tiles. B and x scales are loaded per pair,
// so only a pair's fragments are live (all NT at once spilled at NT = 8, 16).
template <int NT> constexpr int kPairs = (NT + 1) / 2;
template <int NT> constexpr int kPerPair = NT < 2 ? NT : 2;

// ---- per-type stage compute ---------------------------------------------------------------------
// One ring slot (256 rows x 256 k) for this warp's 16 MT rows: acc[m][h][j] += row (16 MT w + 16 m
// + 8 h + g) . token (4 j + t) over the slot's k. wrow: the warp's first row in the slot (generic
// pointer), wrow_s: its shared address plus this lane's ldmatrix offset. kk: the slot's stage
// index within the CTA's K range. off: byte offset of the data in each row (Q6_K only). scl: the
// warp's decoded-scale rows (below).
struct StageCtx {
  const uint8_t* wrow;
  uint32_t wrow_s;
  int kk;
  int off;
  float* scl;
};

// Decoded scales: at the start of each stage the warp turns its rows' packed scales into fp32
// products once (lanes < 16 MT, one row each) in a private shared buffer, which the fragment code
// then reads with one vector load per row and scale pair. Before, each of the 4 lanes of a quad
// decoded the same 6-bit scales for every (row, sub-block) it touched: ~290 of the ~630
// instructions per warp-stage at 1 token for Q4_K (docs/perf/mma_q8.md).
//   Q4_K / Q5_K: per row, per sub-block pair p: float4 {d sc[2p], d sc[2p+1], dmin m[2p],
//     dmin m[2p+1]}: 64-byte rows (the 8 lanes of a 16-byte-load phase read 2 rows: no conflict).
//   Q6_K: per row the 16 products d sc[i], 72-byte rows (float2 reads of 4 rows per phase hit
//     distinct banks).
constexpr int kScaleRowBytes = 72;
constexpr int kScaleRowWords = kScaleRowBytes / 4;  // the buffer is indexed in 4-byte words
constexpr int kScaleBytes = kTileRows * kScaleRowBytes;  // the CTA's buffers (16 MT rows per warp)
// Only the K-quants decode scales; the 32-element types read their one fp16 scale per block in place
// and keep the 18 KB for x (wider rows fit without a workspace).
template <GgmlType T>
constexpr int scale_bytes() {
  return T == GgmlType::Q4_K || T == GgmlType::Q5_K || T == GgmlType::Q6_K ? kScaleBytes : 0;
}

__device__ __forceinline__ float half_lo(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xFFFFu)));
}
__device__ __forceinline__ float half_hi(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}

template <int P>
__device__ __forceinline__ float4 k4_pair_f(const uint4& hdr, float d, float dmin) {
  uint32_t sc, mn;
  k4_pair<P>(hdr, sc, mn);
  return make_float4(d * ubyte_f(sc, 0), d * ubyte_f(sc, 1), dmin * ubyte_f(mn, 0), dmin * ubyte_f(mn, 1));
}

template <int MT, bool Q5>
__device__ __forceinline__ void k45_scales(const StageCtx& s, int lane) {
  constexpr int P = Q5 ? 176 : 144;
  __syncwarp();  // every lane is done reading the previous stage's scales
  if (lane < 16 * MT) {
    const uint4 hdr = *reinterpret_cast<const uint4*>(s.wrow + lane * P);
    const float d = half_lo(hdr.x), dmin = half_hi(hdr.x);
    float4* o = reinterpret_cast<float4*>(s.scl) + 4 * lane;
    o[0] = k4_pair_f<0>(hdr, d, dmin);
    o[1] = k4_pair_f<1>(hdr, d, dmin);
    o[2] = k4_pair_f<2>(hdr, d, dmin);
    o[3] = k4_pair_f<3>(hdr, d, dmin);
  }
  __syncwarp();
}

template <int MT, bool A>
__device__ __forceinline__ void q6k_scales(const StageCtx& s, int lane) {
  __syncwarp();
  if (lane < 16 * MT) {
    const uint8_t* b = s.wrow + lane * 240 + s.off;
    const float d = half_at(b + 208);
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = lds32<A>(b + 192 + 4 * i);
    float2* o = reinterpret_cast<float2*>(s.scl + lane * kScaleRowWords);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = make_float2(d * sbyte_f(w[i >> 1], 2 * (i & 1)), d * sbyte_f(w[i >> 1], 2 * (i & 1) + 1));
  }
  __syncwarp();
}

// Q4_K (Q5 false) / Q5_K (Q5 true): sub-block pair Pp (sub-blocks 2 Pp, 2 Pp + 1) of the stage.
// Code bytes 32 Pp .. 32 Pp + 31 hold elements 64 Pp + l (low nibble) and 64 Pp + 32 + l (high
// nibble): one ldmatrix.x4 of the 16 rows x 32 bytes is the packed A fragment of both.
template <int NT, bool Q5, int Pp>
__device__ __forceinline__ void k45_pair(const StageCtx& s, const XCtx& x, int g, int t,
                                         const uint32_t (&qh)[kMT<NT>][4], float (&acc)[kMT<NT>][2][NT]) {
  constexpr int MT = kMT<NT>;
  constexpr int P = Q5 ? 176 : 144;
  constexpr int kQs = Q5 ? 48 : 16;
  uint32_t q[MT][4];
  float S[MT][2][2], M[MT][2][2];  // [m][h][sub-block of the pair]
  const float4* scl = reinterpret_cast<const float4*>(s.scl);
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    ldsm_x4(s.wrow_s + 16 * m * P + kQs + 32 * Pp, q[m][0], q[m][1], q[m][2], q[m][3]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float4 f = scl[4 * (16 * m + 8 * h + g) + Pp];
      S[m][h][0] = f.x;
      S[m][h][1] = f.y;
      M[m][h][0] = f.z;
      M[m][h][1] = f.w;
    }
  }
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int sb = 2 * Pp + e;
    uint32_t a[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a[m][i] = e ? (q[m][i] >> 4) & kM4 : q[m][i] & kM4;
        if constexpr (Q5) a[m][i] |= ((qh[m][i] >> sb) & 0x01010101u) << 4;
      }
#pragma unroll
    for (int jp = 0; jp < kPairs<NT>; ++jp) {
      uint32_t b[2][2];
      load_b2<NT>(x, s.kk * kStageK + 32 * sb, jp, b);
#pragma unroll
      for (int jj = 0; jj < kPerPair<NT>; ++jj) {
        const int j = 2 * jp + jj;
        const float2 xv = x.xs[(4 * j + t) * x.stride + s.kk * 8 + sb];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          int dd[4];
          mma_k32(a[m], b[jj][0], b[jj][1], dd);
          const float2 v = planes(dd);
          acc[m][0][j] = fmaf(S[m][0][e] * xv.x, v.x, fmaf(-M[m][0][e], xv.y, acc[m][0][j]));
          acc[m][1][j] = fmaf(S[m][1][e] * xv.x, v.y, fmaf(-M[m][1][e], xv.y, acc[m][1][j]));
        }
      }
    }
  }
}

template <int NT, bool Q5>
__device__ __forceinline__ void stage_k45(const StageCtx& s, const XCtx& x, int lane, float (&acc)[kMT<NT>][2][NT]) {
  constexpr int MT = kMT<NT>;
  constexpr int P = Q5 ? 176 : 144;
  const int g = lane >> 2, t = lane & 3;
  k45_scales<MT, Q5>(s, lane);
  uint32_t qh[MT][4] = {};
  if constexpr (Q5) {
#pragma unroll
    for (int m = 0; m < MT; ++m) ldsm_x4(s.wrow_s + 16 * m * P + 16, qh[m][0], qh[m][1], qh[m][2], qh[m][3]);
  }
  k45_pair<NT, Q5, 0>(s, x, g, t, qh, acc);
  k45_pair<NT, Q5, 1>(s, x, g, t, qh, acc);
  k45_pair<NT, Q5, 2>(s, x, g, t, qh, acc);
  k45_pair<NT, Q5, 3>(s, x, g, t, qh, acc);
}

// Q6_K: super-block at s.wrow + row * 240 + s.off (s.off even; A: 4-byte aligned). Sub-block
// j = 4 h + q is elements 128 h + 32 q + l: low nibble (q < 2) / high nibble of ql[64 h + 32 (q & 1)
// + l], bits 2q..2q+1 of qh[32 h + l]; its halves l < 16 (e = 0) and l >= 16 (e = 1) have the int8
// scales sc[8 h + 2 q + e]; codes minus 32. One m16n8k16 per half.
template <int NT, bool A>
__device__ __forceinline__ void stage_q6k(const StageCtx& s, const XCtx& x, int lane, float (&acc)[kMT<NT>][2][NT]) {
  constexpr int MT = kMT<NT>;
  constexpr int P = 240;
  const int g = lane >> 2, t = lane & 3;
  q6k_scales<MT, A>(s, lane);
  const uint8_t* base[MT][2];
  const float* srow[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      base[m][r] = s.wrow + (16 * m + 8 * r + g) * P + s.off;
      srow[m][r] = s.scl + (16 * m + 8 * r + g) * kScaleRowWords;
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    uint32_t ql[MT][2][2][2], qh[MT][2][2];  // [m][r][q & 1][e], [m][r][e]
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint8_t* b0 = base[m][r];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          qh[m][r][e] = lds32<A>(b0 + 128 + 32 * h + 16 * e + 4 * t);
#pragma unroll
          for (int qq = 0; qq < 2; ++qq) ql[m][r][qq][e] = lds32<A>(b0 + 64 * h + 32 * qq + 16 * e + 4 * t);
        }
      }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int sb = 4 * h + q;
      uint32_t a[MT][2][2];  // [m][e][r]
      float S[MT][2][2];     // [m][r][e]
#pragma unroll
      for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const uint32_t lo = (ql[m][r][q & 1][e] >> (4 * (q >> 1))) & kM4;
            const uint32_t hi = ((qh[m][r][e] >> (2 * q)) & 0x03030303u) << 4;
            a[m][e][r] = minus<32>(lo | hi);
          }
          // d sc of the sub-block's halves: scales 8 h + 2 q + e.
          const float2 sv = *reinterpret_cast<const float2*>(srow[m][r] + 8 * h + 2 * q);
          S[m][r][0] = sv.x;
          S[m][r][1] = sv.y;
        }
      }
#pragma unroll
      for (int jp = 0; jp < kPairs<NT>; ++jp) {
        uint32_t b[2][2];
        load_b2<NT>(x, s.kk * kStageK + 32 * sb, jp, b);
#pragma unroll
        for (int jj = 0; jj < kPerPair<NT>; ++jj) {
          const int j = 2 * jp + jj;
          const float u = x.xs[(4 * j + t) * x.stride + s.kk * 8 + sb].x;
#pragma unroll
          for (int m = 0; m < MT; ++m) {
            int d0[4], d1[4];
            mma_k16(a[m][0][0], a[m][0][1], b[jj][0], d0);
            mma_k16(a[m][1][0], a[m][1][1], b[jj][1], d1);
            const float2 v0 = planes(d0), v1 = planes(d1);
            acc[m][0][j] = fmaf(u, fmaf(S[m][0][0], v0.x, S[m][0][1] * v1.x), acc[m][0][j]);
            acc[m][1][j] = fmaf(u, fmaf(S[m][1][0], v0.y, S[m][1][1] * v1.y), acc[m][1][j]);
          }
        }
      }
    }
  }
}

// Legacy 32-element blocks (8 per stage): Q4_0 Q4_1 Q5_0 Q5_1 Q8_0. Block b of a row at b * BB;
// codes of elements l (low nibble / plain byte) and l + 16 (high nibble / byte 16 + l) for
// l = 4t..4t+3 fill a0/a1 and a2/a3.
template <GgmlType T> struct Legacy;
template <> struct Legacy<GgmlType::Q4_0> { static constexpr int bb = 18, qs = 2; static constexpr bool has_min = false; };
template <> struct Legacy<GgmlType::Q4_1> { static constexpr int bb = 20, qs = 4; static constexpr bool has_min = true; };
template <> struct Legacy<GgmlType::Q5_0> { static constexpr int bb = 22, qs = 6; static constexpr bool has_min = false; };
template <> struct Legacy<GgmlType::Q5_1> { static constexpr int bb = 24, qs = 8; static constexpr bool has_min = true; };
template <> struct Legacy<GgmlType::Q8_0> { static constexpr int bb = 34, qs = 2; static constexpr bool has_min = false; };

// Fragment registers of one row of block b: lo (elements 4t..) and hi (16 + 4t..), as int8.
template <GgmlType T, int B>
__device__ __forceinline__ void legacy_row(const uint8_t* blk, int t, uint32_t& lo, uint32_t& hi, float& d, float& mn) {
  using L = Legacy<T>;
  constexpr bool al = ((B * L::bb + L::qs) & 3) == 0;
  d = half_at(blk);
  mn = 0.0f;
  if constexpr (T == GgmlType::Q8_0) {
    lo = lds32<al>(blk + 2 + 4 * t);
    hi = lds32<al>(blk + 18 + 4 * t);
  } else {
    const uint32_t w = lds32<al>(blk + L::qs + 4 * t);
    lo = w & kM4;
    hi = (w >> 4) & kM4;
    if constexpr (T == GgmlType::Q5_0 || T == GgmlType::Q5_1) {
      constexpr int qh_off = T == GgmlType::Q5_0 ? 2 : 4;
      constexpr bool hal = ((B * L::bb + qh_off) & 3) == 0;
      const uint32_t qh = lds32<hal>(blk + qh_off);
      lo |= spread4(qh >> (4 * t));
      hi |= spread4(qh >> (16 + 4 * t));
    }
    if constexpr (T == GgmlType::Q4_0) {
      lo = minus<8>(lo);
      hi = minus<8>(hi);
    } else if constexpr (T == GgmlType::Q5_0) {
      lo = minus<16>(lo);
      hi = minus<16>(hi);
    } else {
      mn = half_at(blk + 2);  // Q4_1 / Q5_1: w = d q + m
    }
  }
}

template <GgmlType T, int NT, int B>
__device__ __forceinline__ void legacy_block(const StageCtx& s, const XCtx& x, int lane, float (&acc)[kMT<NT>][2][NT]) {
  constexpr int MT = kMT<NT>;
  constexpr int P = Fmt<T>::pitch;
  const int g = lane >> 2, t = lane & 3;
  uint32_t a[MT][4];
  float d[MT][2], mn[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < 2; ++r)
      legacy_row<T, B>(s.wrow + (16 * m + 8 * r + g) * P + B * Legacy<T>::bb, t, a[m][r], a[m][2 + r], d[m][r],
                       mn[m][r]);
#pragma unroll
  for (int jp = 0; jp < kPairs<NT>; ++jp) {
    uint32_t b[2][2];
    load_b2<NT>(x, s.kk * kStageK + 32 * B, jp, b);
#pragma unroll
    for (int jj = 0; jj < kPerPair<NT>; ++jj) {
      const int j = 2 * jp + jj;
      const float2 xv = x.xs[(4 * j + t) * x.stride + s.kk * 8 + B];
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        int dd[4];
        mma_k32(a[m], b[jj][0], b[jj][1], dd);
        const float2 v = planes(dd);
        if constexpr (Legacy<T>::has_min) {
          acc[m][0][j] = fmaf(d[m][0] * xv.x, v.x, fmaf(mn[m][0], xv.y, acc[m][0][j]));
          acc[m][1][j] = fmaf(d[m][1] * xv.x, v.y, fmaf(mn[m][1], xv.y, acc[m][1][j]));
        } else {
          acc[m][0][j] = fmaf(d[m][0] * xv.x, v.x, acc[m][0][j]);
          acc[m][1][j] = fmaf(d[m][1] * xv.x, v.y, acc[m][1][j]);
        }
      }
    }
  }
}

template <GgmlType T, int NT>
__device__ __forceinline__ void stage_compute(const StageCtx& s, const XCtx& x, int lane, float (&acc)[kMT<NT>][2][NT]) {
  if constexpr (T == GgmlType::Q4_K) {
    stage_k45<NT, false>(s, x, lane, acc);
  } else if constexpr (T == GgmlType::Q5_K) {
    stage_k45<NT, true>(s, x, lane, acc);
  } else if constexpr (T == GgmlType::Q6_K) {
    if (s.off & 2) stage_q6k<NT, false>(s, x, lane, acc);
    else stage_q6k<NT, true>(s, x, lane, acc);
  } else {
    legacy_block<T, NT, 0>(s, x, lane, acc);
    legacy_block<T, NT, 1>(s, x, lane, acc);
    legacy_block<T, NT, 2>(s, x, lane, acc);
    legacy_block<T, NT, 3>(s, x, lane, acc);
    legacy_block<T, NT, 4>(s, x, lane, acc);
    legacy_block<T, NT, 5>(s, x, lane, acc);
    legacy_block<T, NT, 6>(s, x, lane, acc);
    legacy_block<T, NT, 7>(s, x, lane, acc);
  }
}


// ---- bf16 variant (Q4_K at many tokens) ----------------------------------------------------------
// At 16+ tokens the int8 path's per-output fp32 epilogue (6 instructions per output and 32-k
// sub-block, twice the mma for the second plane) dominates (docs/perf/mma_q8.md). Here the weights
// are dequantized in registers to bf16 with their sub-block scale folded in, x is bf16, and
// mma.m16n8k16 accumulates in fp32 across the whole K range: no per-sub-block epilogue.
//   - A: a code nibble q becomes the bf16 128 + q by one LOP3 ((w >> s) & 0x000F000F | 0x43004300),
//     then fma(128 + q, s, -128 s) = s q with a single rounding (bf16x2 FMA), s = bf16(d sc).
//   - k order: within each 16 elements of a sub-block a thread's A registers hold elements
//     (4t, 4t+2) and (4t+1, 4t+3) of the code word it loaded, so x is stored in the order
//     "even elements, then odd" (stage_x_bf) and the mma's k order matches on both sides.
//   - mins: -dmin m of a super-block's 8 sub-blocks times the bf16 x sums of those sub-blocks is one
//     m16n8k8 per n-tile and stage (A = the 8 mins of rows g, g+8, B = 8 sums of 8 tokens).
//   - n-tiles are 8 tokens (no planes): acc[0][h][2 jb + c] is row 8 h + g, token 8 jb + 2 t + c.
// Error (bf16 keeps 8 significant bits: each rounding is within 2^-8 relative): s, then s q, then x
// rounded (three roundings); the mins and the x sums once each (two):
// |y - y_exact| <= 3.02 * 2^-8 sum |s q x| + 2.01 * 2^-8 sum_j |dmin m_j X_j| + fp32 accumulation
// (matmul_mma_q8.cuh).
__device__ __forceinline__ __nv_bfloat162 as_bf2(uint32_t v) {
  __nv_bfloat162 r;
  memcpy(&r, &v, 4);
  return r;
}
__device__ __forceinline__ uint32_t bf2_bits(__nv_bfloat162 v) {
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}
// Two nibbles (bits 0..3 and 16..19 of w) times s: bf16x2 {s q0, s q1}; c = -128 s. The mask-and-or
// is one LOP3 in PTX: written in C++, nvcc split it into two (ncu, device_s16e.sh: 148 LOP3 per
// warp-stage where 64 were meant).
__device__ __forceinline__ uint32_t dq_bf(uint32_t w, __nv_bfloat162 s, __nv_bfloat162 c) {
  uint32_t v;
  asm("lop3.b32 %0, %1, 0x000F000F, 0x43004300, 0xEA;" : "=r"(v) : "r"(w));  // (w & m) | 128.0 x2
  return bf2_bits(__hfma2(as_bf2(v), s, c));
}
__device__ __forceinline__ void mma_bf16_k16(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, float& d0, float& d1,
                                             float& d2, float& d3) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16_k8(uint32_t a0, uint32_t a1, uint32_t b0, float& d0, float& d1, float& d2,
                                            float& d3) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "r"(a0), "r"(a1), "r"(b0));
}

// Decoded scales of the warp's 16 rows (lanes < 16, one row each): words 0..7 the bf16x2
// {s_j, s_j}, s_j = bf16(d sc_j); words 8..11 the bf16 pairs {-dmin m_2i, -dmin m_2i+1}.
__device__ __forceinline__ void q4k_scales_bf(const StageCtx& s, int lane) {
  __syncwarp();
  if (lane < 16) {
    const uint4 hdr = *reinterpret_cast<const uint4*>(s.wrow + lane * 144);
    const float d = half_lo(hdr.x), dmin = half_hi(hdr.x);
    uint32_t sw[8], mw[4];
    auto pair = [&](auto pc) {
      constexpr int P = decltype(pc)::value;
      uint32_t sc, mn;
      k4_pair<P>(hdr, sc, mn);
      const float s0 = d * ubyte_f(sc, 0), s1 = d * ubyte_f(sc, 1);
      sw[2 * P] = bf2_bits(__floats2bfloat162_rn(s0, s0));
      sw[2 * P + 1] = bf2_bits(__floats2bfloat162_rn(s1, s1));
      mw[P] = bf2_bits(__floats2bfloat162_rn(-dmin * ubyte_f(mn, 0), -dmin * ubyte_f(mn, 1)));
    };
    pair(std::integral_constant<int, 0>{});
    pair(std::integral_constant<int, 1>{});
    pair(std::integral_constant<int, 2>{});
    pair(std::integral_constant<int, 3>{});
    uint2* o = reinterpret_cast<uint2*>(s.scl + lane * kScaleRowWords);  // 72-byte rows: 8-byte aligned
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = make_uint2(sw[2 * i], sw[2 * i + 1]);
    o[4] = make_uint2(mw[0], mw[1]);
    o[5] = make_uint2(mw[2], mw[3]);
  }
  __syncwarp();
}

template <int NT>
__device__ __forceinline__ void stage_q4k_bf(const StageCtx& s, const XCtx& x, int lane, float (&acc)[1][2][NT]) {
  static_assert(NT % 2 == 0, "bf16 n-tiles are 8 tokens");
  constexpr int NB = NT / 2;
  const int g = lane >> 2, t = lane & 3;
  q4k_scales_bf(s, lane);
  const uint32_t* sr0 = reinterpret_cast<const uint32_t*>(s.scl) + g * kScaleRowWords;
  const uint32_t* sr1 = sr0 + 8 * kScaleRowWords;
  const __nv_bfloat162 m128 = __float2bfloat162_rn(-128.0f);
  const uint32_t xb = x.xq_s + x.lane_b + uint32_t(2 * s.kk * kStageK);
#pragma unroll
  for (int Pp = 0; Pp < 4; ++Pp) {
    uint32_t q[4];  // row g / g + 8, code bytes 4t.. (q[0], q[1]) and 16 + 4t.. (q[2], q[3])
    ldsm_x4(s.wrow_s + 16 + 32 * Pp, q[0], q[1], q[2], q[3]);
    const uint2 s0 = *reinterpret_cast<const uint2*>(sr0 + 2 * Pp);
    const uint2 s1 = *reinterpret_cast<const uint2*>(sr1 + 2 * Pp);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int sb = 2 * Pp + e;
      const __nv_bfloat162 sg = as_bf2(e ? s0.y : s0.x), sh = as_bf2(e ? s1.y : s1.x);
      const __nv_bfloat162 cg = __hmul2(sg, m128), ch = __hmul2(sh, m128);
      uint32_t a[2][4];  // [16-element step][fragment register]
#pragma unroll
      for (int st = 0; st < 2; ++st) {
        a[st][0] = dq_bf(q[2 * st] >> (4 * e), sg, cg);
        a[st][1] = dq_bf(q[2 * st + 1] >> (4 * e), sh, ch);
        a[st][2] = dq_bf(q[2 * st] >> (8 + 4 * e), sg, cg);
        a[st][3] = dq_bf(q[2 * st + 1] >> (8 + 4 * e), sh, ch);
      }
#pragma unroll
      for (int jb = 0; jb < NB; ++jb) {
        uint32_t b[4];
        ldsm_x4(xb + uint32_t(64 * sb + 8 * jb * x.pitch), b[0], b[1], b[2], b[3]);
        mma_bf16_k16(a[0], b[0], b[1], acc[0][0][2 * jb], acc[0][0][2 * jb + 1], acc[0][1][2 * jb], acc[0][1][2 * jb + 1]);
        mma_bf16_k16(a[1], b[2], b[3], acc[0][0][2 * jb], acc[0][0][2 * jb + 1], acc[0][1][2 * jb], acc[0][1][2 * jb + 1]);
      }
    }
  }
  const uint32_t ma0 = sr0[8 + t], ma1 = sr1[8 + t];
#pragma unroll
  for (int jb = 0; jb < NB; ++jb) {
    const uint32_t b0 = *reinterpret_cast<const uint32_t*>(x.sums + (8 * jb + g) * x.sum_pitch + 2 * (8 * s.kk + 2 * t));
    mma_bf16_k8(ma0, ma1, b0, acc[0][0][2 * jb], acc[0][0][2 * jb + 1], acc[0][1][2 * jb], acc[0][1][2 * jb + 1]);
  }
}

// Q6_K in the bf16 variant (mma_q8_bf_kernel<Q6_K>): a 240-byte slot row holds the super-block at
// the even offset s.off (<= 14): ql[128], qh[64], 16 int8 scales, fp16 d. Its words are read with
// 4-byte loads, funnel-shifted where s.off is 2 mod 4 (A false), not ldmatrix (16-byte rows only).
// The warp's 16 rows' scales become bf16 pairs (s, s), s = bf16(d sc_j) for the 16 sub-blocks of 16,
// in the warp's decoded-scale rows.
template <bool A>
__device__ __forceinline__ void q6k_scales_bf(const StageCtx& s, int lane) {
  __syncwarp();
  if (lane < 16) {
    const uint8_t* row = s.wrow + lane * BfFmt<GgmlType::Q6_K>::box + s.off;
    const float d = half_at(row + 208);
    uint32_t v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = lds32<A>(row + 192 + 4 * i);
    uint32_t w[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const float f = d * sbyte_f(v[i >> 2], i & 3);
      w[i] = bf2_bits(__floats2bfloat162_rn(f, f));
    }
    uint2* o = reinterpret_cast<uint2*>(s.scl + lane * kScaleRowWords);  // 72-byte rows: 8-byte aligned
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = make_uint2(w[2 * i], w[2 * i + 1]);
  }
  __syncwarp();
}
// Two weights s (q - 32) as bf16: q's low 4 bits at bits 0..3 of bytes 0 and 2 of `lo`, its high 2
// bits at bits 4..5 of bytes 0 and 2 of `hi4`. 128 + q is exact in bf16 (8 significant bits), so is
// (128 + q) - 160 = q - 32; the product with s rounds once.
__device__ __forceinline__ uint32_t dq6_bf(uint32_t lo, uint32_t hi4, __nv_bfloat162 s) {
  uint32_t v, u;
  asm("lop3.b32 %0, %1, 0x000F000F, 0x43004300, 0xEA;" : "=r"(v) : "r"(lo));  // (lo & m) | 128.0 x2
  asm("lop3.b32 %0, %1, 0x00300030, %2, 0xEA;" : "=r"(u) : "r"(hi4), "r"(v));  // (hi4 & m) | v
  const __nv_bfloat162 t = __hsub2(as_bf2(u), __float2bfloat162_rn(160.0f));
  return bf2_bits(__hmul2(t, s));
}
// The high 2 bits of sub-group qq (bits 2 qq, 2 qq + 1 of each qh byte) of bytes 0 and 2 moved to
// bits 4..5 (Hi = false), or of bytes 1 and 3 moved there (Hi = true).
template <int QQ, bool Hi>
__device__ __forceinline__ uint32_t q6_hi4(uint32_t h) {
  if constexpr (Hi) return h >> (4 + 2 * QQ);
  else if constexpr (QQ < 2) return h << (4 - 2 * QQ);
  else return h >> (2 * QQ - 4);
}
// The words stage_q4k_bf's ldmatrix gives a thread, read directly: w[0] row g, bytes 4t.. of the
// 32-byte chunk at byte c of the block; w[1] row g + 8; w[2], w[3] the same 16 bytes on.
template <bool A>
__device__ __forceinline__ void q6_words(const uint8_t* bg, int c, int t, uint32_t (&w)[4]) {
  constexpr int P = BfFmt<GgmlType::Q6_K>::box;
  w[0] = lds32<A>(bg + c + 4 * t);
  w[1] = lds32<A>(bg + 8 * P + c + 4 * t);
  w[2] = lds32<A>(bg + c + 16 + 4 * t);
  w[3] = lds32<A>(bg + 8 * P + c + 16 + 4 * t);
}
// One ring slot for the warp's 16 rows, as stage_q4k_bf. ggml's Q6_K order: weight 128 n + 32 qq + l
// (half n, quarter qq = 2 e + c, l < 32) has its low nibble e of ql[64 n + 32 c + l], its high bits
// 2 qq.. of qh[32 n + l] and scale 8 n + 2 qq + l / 16. So the 32 ql bytes of (n, c) and the 32 qh
// bytes of n, read as q6_words, give Q4_K's fragment positions: bytes 4t.. of each 16-byte half feed
// the elements 4t.. of that 16-k step, in the even / odd order of the x rows.
template <int QQ, int NT>
__device__ __forceinline__ void q6k_group(const uint32_t (&q)[4], const uint32_t (&h)[4], const uint32_t* sr0,
                                          const uint32_t* sr1, uint32_t xb, int pitch, int n, float (&acc)[1][2][NT]) {
  constexpr int E = QQ >> 1;
  const uint2 s0 = *reinterpret_cast<const uint2*>(sr0 + 8 * n + 2 * QQ);  // sub-blocks 8 n + 2 QQ + st
  const uint2 s1 = *reinterpret_cast<const uint2*>(sr1 + 8 * n + 2 * QQ);
  uint32_t a[2][4];
#pragma unroll
  for (int st = 0; st < 2; ++st) {
    const __nv_bfloat162 sg = as_bf2(st ? s0.y : s0.x), sh = as_bf2(st ? s1.y : s1.x);
    a[st][0] = dq6_bf(q[2 * st] >> (4 * E), q6_hi4<QQ, false>(h[2 * st]), sg);
    a[st][1] = dq6_bf(q[2 * st + 1] >> (4 * E), q6_hi4<QQ, false>(h[2 * st + 1]), sh);
    a[st][2] = dq6_bf(q[2 * st] >> (8 + 4 * E), q6_hi4<QQ, true>(h[2 * st]), sg);
    a[st][3] = dq6_bf(q[2 * st + 1] >> (8 + 4 * E), q6_hi4<QQ, true>(h[2 * st + 1]), sh);
  }
#pragma unroll
  for (int jb = 0; jb < NT / 2; ++jb) {
    uint32_t b[4];
    ldsm_x4(xb + uint32_t(64 * (4 * n + QQ) + 8 * jb * pitch), b[0], b[1], b[2], b[3]);
    mma_bf16_k16(a[0], b[0], b[1], acc[0][0][2 * jb], acc[0][0][2 * jb + 1], acc[0][1][2 * jb], acc[0][1][2 * jb + 1]);
    mma_bf16_k16(a[1], b[2], b[3], acc[0][0][2 * jb], acc[0][0][2 * jb + 1], acc[0][1][2 * jb], acc[0][1][2 * jb + 1]);
  }
}
template <int NT, bool A>
__device__ __forceinline__ void stage_q6k_bf_at(const StageCtx& s, const XCtx& x, int lane, float (&acc)[1][2][NT]) {
  const int g = lane >> 2, t = lane & 3;
  q6k_scales_bf<A>(s, lane);
  const uint32_t* sr0 = reinterpret_cast<const uint32_t*>(s.scl) + g * kScaleRowWords;
  const uint32_t* sr1 = sr0 + 8 * kScaleRowWords;
  const uint32_t xb = x.xq_s + x.lane_b + uint32_t(2 * s.kk * kStageK);
  const uint8_t* bg = s.wrow + g * BfFmt<GgmlType::Q6_K>::box + s.off;  // row g's super-block
#pragma unroll
  for (int n = 0; n < 2; ++n) {
    uint32_t h[4], q0[4], q1[4];
    q6_words<A>(bg, 128 + 32 * n, t, h);
    q6_words<A>(bg, 64 * n, t, q0);
    q6_words<A>(bg, 64 * n + 32, t, q1);
    q6k_group<0, NT>(q0, h, sr0, sr1, xb, x.pitch, n, acc);
    q6k_group<1, NT>(q1, h, sr0, sr1, xb, x.pitch, n, acc);
    q6k_group<2, NT>(q0, h, sr0, sr1, xb, x.pitch, n, acc);
    q6k_group<3, NT>(q1, h, sr0, sr1, xb, x.pitch, n, acc);
  }
}
template <int NT>
__device__ __forceinline__ void stage_q6k_bf(const StageCtx& s, const XCtx& x, int lane, float (&acc)[1][2][NT]) {
  static_assert(NT % 2 == 0, "bf16 n-tiles are 8 tokens");
  if (s.off & 2) stage_q6k_bf_at<NT, false>(s, x, lane, acc);
  else stage_q6k_bf_at<NT, true>(s, x, lane, acc);
}

// ---- kernel arguments and tiles -----------------------------------------------------------------
struct Seg {
  const uint8_t* w;
  float* y;
  const float* bias;
  int64_t rows;
};

struct Args {
  Seg seg[3];
  int n_seg;
  int tile_begin[4];   // first tile of each segment; tile_begin[n_seg] = n_tiles, INT_MAX after
  int n_tiles;
  int64_t cols;
  int64_t row_bytes;
  const float* x;
  int n_tokens;
  const float* residual;
  int glu;             // 0 none, 1 SwiGLU, 2 GeGLU
  int splits;          // S
  int n_kst;           // 256-weight stages per row
  int kr_max;          // weights of the longest split (x staging size)
  int* counters;       // (n_tiles) arrival counts, zero between launches (S > 1)
  float* partials;     // (n_tiles, S, 1024 NT) (S > 1)
  unsigned long long* probe;  // nullable: kMmaQ8ProbeSlots phase clocks per CTA (MmaQ8Params::probe)
  // mma_q8_bf_kernel only: per segment, its rows as a 2-D uint8 tensor (row_bytes x rows) with a
  // box of one super-block x the rows a warp copies per matrix (16, glu 8).
  CUtensorMap tmap[3];
};

// Phase probe (MmaQ8Params::probe): thread 0 of each CTA records clock64 at the phase boundaries
// and the global timer at its start and end. One uniform branch per boundary when off.
__device__ __forceinline__ void probe_clock(const Args& a, int slot) {
  if (a.probe != nullptr && threadIdx.x == 0) a.probe[size_t(blockIdx.x) * kMmaQ8ProbeSlots + slot] = clock64();
}
__device__ __forceinline__ void probe_value(const Args& a, int slot, unsigned long long v) {
  if (a.probe != nullptr && threadIdx.x == 0) a.probe[size_t(blockIdx.x) * kMmaQ8ProbeSlots + slot] = v;
}
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void probe_start(const Args& a) {
  if (a.probe == nullptr) return;
  probe_value(a, kMmaQ8ProbeStartNs, global_ns());
  probe_clock(a, kMmaQ8ProbeStart);
}
__device__ __forceinline__ void probe_end(const Args& a, int n_items) {
  if (a.probe == nullptr) return;
  probe_clock(a, kMmaQ8ProbeEnd);
  probe_value(a, kMmaQ8ProbeEndNs, global_ns());
  probe_value(a, kMmaQ8ProbeItems_, (unsigned long long)n_items);
  unsigned smid;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  probe_value(a, kMmaQ8ProbeSm, smid);
}

struct TileRef {
  const uint8_t* w0;  // rows of the tile (glu: gate) ...
  const uint8_t* w1;  // ... glu: up (same row indices)
  int64_t r0;         // first row index
  int64_t rows;       // rows of the matrix
  int seg;
};

__device__ __forceinline__ TileRef tile_ref(const Args& a, int tile) {
  TileRef r;
  if (a.glu) {
    r.seg = 0;
    r.w0 = a.seg[0].w;
    r.w1 = a.seg[1].w;
    r.r0 = int64_t(tile) * (kTileRows / 2);
    r.rows = a.seg[0].rows;
    return r;
  }
  int s = 0;
  if (tile >= a.tile_begin[1]) s = 1;
  if (tile >= a.tile_begin[2]) s = 2;
  r.seg = s;
  r.w0 = r.w1 = a.seg[s].w;
  r.r0 = int64_t(tile - a.tile_begin[s]) * kTileRows;
  r.rows = a.seg[s].rows;
  return r;
}

// Copies stage ks (global 256-k index) of tile `tr` into a ring slot: thread-consecutive 16-byte
// pieces of consecutive rows (coalesced). Slot row sr holds matrix row r0 + sr, or with glu the
// gate / up row of the warp's pairing: MT = 2, sr = 32 w + 16 m + l: m = 0 gate, m = 1 up, row
// r0 + 16 w + l; MT = 1, sr = 16 w + 8 h + l: h = 0 gate, h = 1 up, row r0 + 8 w + l (so the
// gate and up accumulators of one output row sit in one thread). Rows past the matrix are not
// copied (their stale slot bytes feed accumulators that are never stored).
template <GgmlType T, int NT, bool BF>
__device__ __forceinline__ void issue_stage(const Args& a, const TileRef& tr, int ks, uint32_t slot_s) {
  constexpr int kThreads = kThreadsOf<NT, BF>;
  constexpr int kPieces = Fmt<T>::copy / 16;
  constexpr int kTotal = kTileRows * kPieces;  // 16-byte pieces of the slot
  constexpr int kIters = (kTotal + kThreads - 1) / kThreads;
  const int64_t stage_off = T == GgmlType::Q6_K ? (int64_t(ks) * 210) & ~int64_t(15) : int64_t(ks) * Fmt<T>::bytes;
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int idx = int(threadIdx.x) + kThreads * i;
    if (kTotal % kThreads != 0 && idx >= kTotal) break;
    const int sr = idx / kPieces;
    const int c = idx - sr * kPieces;
    int64_t row;
    const uint8_t* w;
    if (a.glu) {
      if constexpr (kMT<NT, BF> == 2) {
        row = tr.r0 + 16 * (sr >> 5) + (sr & 15);
        w = (sr & 16) ? tr.w1 : tr.w0;
      } else {
        row = tr.r0 + 8 * (sr >> 4) + (sr & 7);
        w = (sr & 8) ? tr.w1 : tr.w0;
      }
    } else {
      row = tr.r0 + sr;
      w = tr.w0;
    }
    if (row < tr.rows)
      cp_async16(slot_s + uint32_t(sr * Fmt<T>::pitch + 16 * c), w + row * a.row_bytes + stage_off + 16 * c);
  }
}


// Token of accumulator column j of this lane: int8 n-tiles are 4 tokens x 2 planes (token 4 j + t),
// bf16 n-tiles 8 tokens (column pair j = 2 jb + c: token 8 jb + 2 t + c).
template <bool BF>
__device__ __forceinline__ int acc_token(int j, int t) {
  return BF ? 8 * (j >> 1) + 2 * t + (j & 1) : 4 * j + t;
}

template <int NT, bool BF>
__device__ __forceinline__ void store_tile(const Args& a, const TileRef& tr, int warp, int lane,
                                           const float (&acc)[kMT<NT, BF>][2][NT]) {
  constexpr int MT = kMT<NT, BF>;
  const int g = lane >> 2, t = lane & 3;
  if (a.glu) {
    // (gate, up) accumulators of output row: MT = 2, (acc[0][h], acc[1][h]) of row 16 w + 8 h + g;
    // MT = 1, (acc[0][0], acc[0][1]) of row 8 w + g (issue_stage's pairing).
#pragma unroll
    for (int h = 0; h < MT; ++h) {
      const int64_t row = MT == 2 ? tr.r0 + 16 * warp + 8 * h + g : tr.r0 + 8 * warp + g;
      if (row >= tr.rows) continue;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int tok = acc_token<BF>(j, t);
        if (tok >= a.n_tokens) continue;
        const float gt = MT == 2 ? acc[0][h][j] : acc[0][0][j];
        const float up = MT == 2 ? acc[MT - 1][h][j] : acc[0][1][j];
        const float act = a.glu == 1 ? silu_f(gt) : gelu_tanh_f(gt);
        a.seg[0].y[int64_t(tok) * tr.rows + row] = act * up;
      }
    }
    return;
  }
  const Seg& sg = a.seg[tr.seg];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = tr.r0 + 16 * MT * warp + 16 * m + 8 * h + g;
      if (row >= tr.rows) continue;
      const float bias = sg.bias ? sg.bias[row] : 0.0f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int tok = acc_token<BF>(j, t);
        if (tok >= a.n_tokens) continue;
        const int64_t idx = int64_t(tok) * tr.rows + row;
        float out = acc[m][h][j] + bias;
        if (a.residual) out += a.residual[idx];
        sg.y[idx] = out;
      }
    }
}

// Quantizes x[t][k0 .. k0 + kr) of every token into the two planes (quantize_x4, x_planes.cuh:
// 8 threads per 32-element block, the same rounding as the decode GEMV). Tokens n_tokens ..
// 4 NT - 1 get zero planes and scales.
template <int NT>
__device__ __forceinline__ void quantize_x(const Args& a, int k0, int kr, int8_t* xq, float2* xs) {
  constexpr int kThreads = kThreadsOf<NT>;
  const int pitch = x_pitch(a.kr_max), stride = xs_stride(a.kr_max);
  const int per_t = kr / 4;  // float4 per token
  const int total = a.n_tokens * per_t;
  constexpr int kXB = 4;
  for (int i0 = 0; i0 < total; i0 += kXB * kThreads) {
    float4 v[kXB];
    int tok[kXB], e4[kXB];
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      const int i = i0 + u * kThreads + int(threadIdx.x);
      v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      tok[u] = i / per_t;
      e4[u] = i - tok[u] * per_t;
      if (i < total) v[u] = *reinterpret_cast<const float4*>(a.x + int64_t(tok[u]) * a.cols + k0 + 4 * e4[u]);
    }
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      if (i0 + u * kThreads >= total) break;  // block-uniform; 8-thread groups are all in or all out
      const bool act = i0 + u * kThreads + int(threadIdx.x) < total;
      const XQuad q = quantize_x4(v[u]);
      if (act) {
        *reinterpret_cast<uint32_t*>(xq + (2 * tok[u]) * pitch + 4 * e4[u]) = q.p1;
        *reinterpret_cast<uint32_t*>(xq + (2 * tok[u] + 1) * pitch + 4 * e4[u]) = q.p2;
        if ((e4[u] & 7) == 0) xs[tok[u] * stride + (e4[u] >> 3)] = make_float2(q.u, q.sum);
      }
    }
  }
  // Padding tokens: zero plane rows 2 n .. 8 NT - 1 and their scales.
  const int zrow0 = 2 * a.n_tokens;
  const int z16 = (8 * NT - zrow0) * (pitch / 16);
  for (int i = int(threadIdx.x); i < z16; i += kThreads)
    reinterpret_cast<uint4*>(xq + zrow0 * pitch)[i] = make_uint4(0u, 0u, 0u, 0u);
  const int zs = (4 * NT - a.n_tokens) * stride;
  for (int i = int(threadIdx.x); i < zs; i += kThreads) xs[a.n_tokens * stride + i] = make_float2(0.f, 0.f);
}


// The bf16 variant's x (xbf_pitch, stage_q4k_bf): x[t][k0 .. k0 + kr) of every token as bf16, each
// 16 elements stored even-indexed first, then odd-indexed; and the bf16 sum of each 32-block (of
// the fp32 values, summed by the 8 threads of the block). Tokens n_tokens .. 4 NT - 1 are zero.
// 16 float4 loads in flight per thread (8 until session 17: the adds waiting on these loads were
// 10-13% of the stall samples, ncu in device_s17g.sh; 32 tokens x 1024 k is 16 float4 per thread,
// one round now), and the (token, float4) pair of each element stepped with a carry instead of a
// division per element: the int8 quantize_x's loop cost ~76 instructions per float4 here (ncu,
// device_s16e.sh: 17% of the kernel's instructions at 32 tokens).
template <int NT>
__device__ __forceinline__ void stage_x_bf(const Args& a, int k0, int kr, uint8_t* xb) {
  constexpr int kThreads = kThreadsOf<NT, true>;
  constexpr int kXB = 16;
  const int pitch = xbf_pitch(a.kr_max), spitch = xbf_sum_pitch(a.kr_max);
  uint8_t* sums = xb + size_t(4 * NT) * pitch;
  const int per_t = kr / 4;  // float4 per token
  const int total = a.n_tokens * per_t;
  const int step_t = kThreads / per_t, step_e = kThreads - step_t * per_t;
  int tok_n = int(threadIdx.x) / per_t;  // this thread's next element: token, float4 in the token
  int e4_n = int(threadIdx.x) - tok_n * per_t;
  for (int i0 = 0; i0 < total; i0 += kXB * kThreads) {
    float4 v[kXB];
    int tok[kXB], e4[kXB];
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      tok[u] = tok_n;
      e4[u] = e4_n;
      v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (i0 + u * kThreads + int(threadIdx.x) < total)
        v[u] = *reinterpret_cast<const float4*>(a.x + int64_t(tok_n) * a.cols + k0 + 4 * e4_n);
      tok_n += step_t;
      e4_n += step_e;
      if (e4_n >= per_t) {
        e4_n -= per_t;
        ++tok_n;
      }
    }
#pragma unroll
    for (int u = 0; u < kXB; ++u) {
      if (i0 + u * kThreads >= total) break;  // block-uniform; 8-thread groups are all in or all out
      float sum = (v[u].x + v[u].y) + (v[u].z + v[u].w);
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      sum += __shfl_xor_sync(0xffffffffu, sum, 4);
      if (i0 + u * kThreads + int(threadIdx.x) < total) {
        const int q = e4[u] & 3;  // float4 of its 16-element group: elements 4q .. 4q + 3
        uint8_t* grp = xb + size_t(tok[u]) * pitch + 32 * (e4[u] >> 2);
        *reinterpret_cast<uint32_t*>(grp + 4 * q) = bf2_bits(__floats2bfloat162_rn(v[u].x, v[u].z));
        *reinterpret_cast<uint32_t*>(grp + 16 + 4 * q) = bf2_bits(__floats2bfloat162_rn(v[u].y, v[u].w));
        if ((e4[u] & 7) == 0)
          *reinterpret_cast<__nv_bfloat16*>(sums + size_t(tok[u]) * spitch + 2 * (e4[u] >> 3)) = __float2bfloat16_rn(sum);
      }
    }
  }
  const int zrows = 4 * NT - a.n_tokens;
  const int zx = zrows * (pitch / 16), zs = zrows * (spitch / 16);
  for (int i = int(threadIdx.x); i < zx; i += kThreads)
    reinterpret_cast<uint4*>(xb + size_t(a.n_tokens) * pitch)[i] = make_uint4(0u, 0u, 0u, 0u);
  for (int i = int(threadIdx.x); i < zs; i += kThreads)
    reinterpret_cast<uint4*>(sums + size_t(a.n_tokens) * spitch)[i] = make_uint4(0u, 0u, 0u, 0u);
}

// The CTA's share of the launch: split blockIdx % S of the K range (stages kst0 .. kst0 + nk) of
// the tiles grp, grp + G, ... (grp = blockIdx / S, G = grid / S): n_items (tile, stage) items.
struct WorkSplit {
  int split, grp, G, kst0, nk, n_items;
};
__device__ __forceinline__ WorkSplit work_split(const Args& a) {
  const int S = a.splits;
  WorkSplit w;
  w.split = int(blockIdx.x) % S;
  w.grp = int(blockIdx.x) / S;
  w.G = int(gridDim.x) / S;
  w.kst0 = int(int64_t(w.split) * a.n_kst / S);
  w.nk = int(int64_t(w.split + 1) * a.n_kst / S) - w.kst0;
  const int n_my = w.grp < a.n_tiles ? (a.n_tiles - 1 - w.grp) / w.G + 1 : 0;
  w.n_items = n_my * w.nk;
  return w;
}

// A CTA's tile is done (its last stage of the split): store it (S == 1) or write the split's
// partial to the workspace, and the last CTA of the tile to arrive (arrival counter) adds the S
// partials in split order (bit-reproducible) and stores. The accumulators are zeroed for the next
// tile. The partial reads are issued two splits at a time with every accumulator's load in flight
// (the add order per output is unchanged): one load per accumulator and split in a dependent
// chain cost ~10 us at 32 tokens, S = 4 (phase probe, session 17).
template <int NT, bool BF>
__device__ __forceinline__ void finish_tile(const Args& a, int tile, int split, int warp, int lane, int* s_last,
                                            float (&acc)[kMT<NT, BF>][2][NT]) {
  constexpr int MT = kMT<NT, BF>;
  constexpr int kThreads = kThreadsOf<NT, BF>;
  const int S = a.splits;
  const TileRef tr = tile_ref(a, tile);
  bool store = true;
  if (S > 1) {
    float* part = a.partials + size_t(tile) * S * (1024 * NT);
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < NT; ++j)
          part[size_t(split) * (1024 * NT) + ((m * 2 + h) * NT + j) * kThreads + threadIdx.x] = acc[m][h][j];
    // One fence per CTA, not per thread (the per-thread fence was 5% of the stall samples at 32
    // tokens, ncu in device_s17g.sh): the barrier orders every thread's partial stores before
    // thread 0's fence, which is cumulative, and its atomic publishes them (CUTLASS's split-K
    // semaphore does the same); the last CTA's thread 0 fences again after its atomic (acquire)
    // and the barrier orders that before every thread's partial loads (L2, __ldcg).
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();
      const bool last = atomicAdd(&a.counters[tile], 1) == S - 1;
      if (last) __threadfence();
      *s_last = last;
    }
    __syncthreads();
    store = *s_last != 0;
    if (store) {
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int j = 0; j < NT; ++j) acc[m][h][j] = 0.0f;
      const float* pt = part + threadIdx.x;
      int s2 = 0;
      for (; s2 + 2 <= S; s2 += 2) {
        float v0[MT][2][NT], v1[MT][2][NT];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < NT; ++j) {
              const size_t o = size_t((m * 2 + h) * NT + j) * kThreads;
              v0[m][h][j] = __ldcg(pt + size_t(s2) * (1024 * NT) + o);
              v1[m][h][j] = __ldcg(pt + size_t(s2 + 1) * (1024 * NT) + o);
            }
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < NT; ++j) acc[m][h][j] = (acc[m][h][j] + v0[m][h][j]) + v1[m][h][j];
      }
      if (s2 < S) {
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < NT; ++j)
              acc[m][h][j] += __ldcg(pt + size_t(s2) * (1024 * NT) + size_t((m * 2 + h) * NT + j) * kThreads);
      }
      if (threadIdx.x == 0) a.counters[tile] = 0;  // ready for the next launch
    }
  }
  if (store) store_tile<NT, BF>(a, tr, warp, lane, acc);
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < NT; ++j) acc[m][h][j] = 0.0f;
}

// Stages the bf16 x of the CTA's K range (stage_x_bf) at xb and returns its fragment context.
template <int NT>
__device__ __forceinline__ XCtx stage_x_ctx_bf(const Args& a, int kst0, int nk, uint8_t* xb, int lane) {
  stage_x_bf<NT>(a, kst0 * kStageK, nk * kStageK, xb);
  XCtx xc;
  xc.xq_s = smem_u32(xb);
  xc.pitch = xbf_pitch(a.kr_max);
  xc.lane_b = uint32_t((lane & 7) * xc.pitch + 16 * (lane >> 3));
  xc.xs = nullptr;
  xc.stride = 0;
  xc.sums = xb + size_t(4 * NT) * xc.pitch;
  xc.sum_pitch = xbf_sum_pitch(a.kr_max);
  return xc;
}

// BF: the bf16 variant (T == Q4_K only, NT even).
template <GgmlType T, int NT, bool BF>
__global__ void __launch_bounds__(kThreadsOf<NT, BF>, 1) mma_q8_kernel(const __grid_constant__ Args a) {
  static_assert(!BF || (T == GgmlType::Q4_K && NT % 2 == 0), "the bf16 variant is Q4_K at even NT");
  constexpr int MT = kMT<NT, BF>;
  extern __shared__ uint4 mmq_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(mmq_smem4);
  constexpr int kSt = ring_stages<T, NT>();
  constexpr int kPitch = Fmt<T>::pitch;
  constexpr int kSlot = kTileRows * kPitch;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const uint32_t ring_s = smem_u32(smem);
  int8_t* xq = reinterpret_cast<int8_t*>(smem + ring_bytes<T, NT>());
  float2* xs = reinterpret_cast<float2*>(xq + size_t(8 * NT) * x_pitch(a.kr_max));
  float* scl = reinterpret_cast<float*>(smem + ring_bytes<T, NT>() + x_bytes(NT, a.kr_max));  // 16-byte aligned
  int* s_last = reinterpret_cast<int*>(reinterpret_cast<uint8_t*>(scl) + scale_bytes<T>());

  const WorkSplit ws = work_split(a);
  const int split = ws.split, grp = ws.grp, G = ws.G, kst0 = ws.kst0, nk = ws.nk, n_items = ws.n_items;
  probe_start(a);

  // Producer: item i = (tile ordinal i / nk, stage i % nk) into slot i % kSt.
  int p_item = 0;
  TileRef p_tile = tile_ref(a, grp < a.n_tiles ? grp : 0);
  auto issue = [&]() {
    const int ti = p_item / nk, kk = p_item - ti * nk;
    if (kk == 0) p_tile = tile_ref(a, grp + ti * G);
    issue_stage<T, NT, BF>(a, p_tile, kst0 + kk, ring_s + uint32_t((p_item % kSt) * kSlot));
    ++p_item;
  };
#pragma unroll
  for (int s = 0; s < kSt - 1; ++s) {
    if (p_item < n_items) issue();
    cp_async_commit();
  }

  pdl_wait();  // x is written by the previous kernel; y / residual may still be read by it
  probe_clock(a, kMmaQ8ProbePdl);

  XCtx xc;
  if constexpr (BF) {
    xc = stage_x_ctx_bf<NT>(a, kst0, nk, reinterpret_cast<uint8_t*>(xq), lane);
  } else {
    xc.xq_s = smem_u32(xq);
    quantize_x<NT>(a, kst0 * kStageK, nk * kStageK, xq, xs);
    xc.pitch = x_pitch(a.kr_max);
    xc.lane_b = uint32_t((8 * (lane >> 4) + (lane & 7)) * xc.pitch + 16 * ((lane >> 3) & 1));
    xc.xs = xs;
    xc.stride = xs_stride(a.kr_max);
    xc.sums = nullptr;
    xc.sum_pitch = 0;
  }
  const uint32_t a_lane = uint32_t(((lane & 7) + 8 * ((lane >> 3) & 1)) * kPitch + 16 * (lane >> 4));
  probe_clock(a, kMmaQ8ProbeX);

  float acc[MT][2][NT];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < NT; ++j) acc[m][h][j] = 0.0f;

  for (int it = 0; it < n_items; ++it) {
    if (it < kMmaQ8ProbeItems) probe_clock(a, kMmaQ8ProbeItem0 + 2 * it);
    cp_async_wait<kSt - 2>();
    __syncthreads();  // slot it % kSt landed for every thread; slot (it - 1) % kSt is free
    if (it < kMmaQ8ProbeItems) probe_clock(a, kMmaQ8ProbeItem0 + 2 * it + 1);
    if (p_item < n_items) issue();
    cp_async_commit();

    const int ti = it / nk, kk = it - ti * nk;
    const int slot = it % kSt;
    StageCtx sc;
    sc.wrow = smem + size_t(slot) * kSlot + size_t(16 * MT * warp) * kPitch;
    sc.wrow_s = ring_s + uint32_t(slot * kSlot + 16 * MT * warp * kPitch) + a_lane;
    sc.scl = scl + 16 * MT * warp * kScaleRowWords;
    sc.kk = kk;
    sc.off = T == GgmlType::Q6_K ? ((kst0 + kk) * 210) & 15 : 0;
    if constexpr (BF) stage_q4k_bf<NT>(sc, xc, lane, acc);
    else stage_compute<T, NT>(sc, xc, lane, acc);

    if (kk == nk - 1) finish_tile<NT, BF>(a, grp + ti * G, split, warp, lane, s_last, acc);
  }
  cp_async_wait<0>();
  probe_end(a, n_items);
  pdl_trigger();
}


// The bf16 variant with a ring per warp fed by tensor-map copies (session 17). The phase probe of
// the CTA-ring kernel above (one ring of 256-row stages filled by 16-byte cp.async, a CTA barrier
// per stage) showed no ring wait but ~2 us per stage at every token count from 8 to 32, ~2 TB/s over
// 112 CTAs: the warps stalled issuing the 2304 cp.async of a stage. One 144-byte bulk copy per row
// (256 per stage) was no better (~10 cycles per copy in the TMA unit). Here every warp owns its 16
// rows of each tile and lane 0 requests them as one 2-D tensor-map box (Args::tmap; two 8-row boxes
// with glu) into the warp's slot, completing on the slot's mbarrier; the warp alone consumes it, so
// no CTA barrier runs per stage and D stages per warp (bf_ring_depth: up to half a CTA's weights at
// 8 tokens) are requested before x is staged. Work split, x, compute, split-K and store are those of
// mma_q8_kernel<Q4_K, NT, true>.
template <GgmlType T, int NT>
__global__ void __launch_bounds__(kThreadsOf<NT, true>, 1) mma_q8_bf_kernel(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  static_assert(NT % 2 == 0 && kThreadsOf<NT, true> == 32 * kBfWarps, "bf16 n-tiles are 8 tokens, 16 warps");
  static_assert(T == GgmlType::Q4_K || T == GgmlType::Q6_K, "the bf16 variant is Q4_K or Q6_K");
  constexpr int D = bf_ring_depth<T, NT>();
  constexpr int kPitch = BfFmt<T>::box;  // a slot row: one box
  constexpr int kSlot = bf_warp_slot<T>();
  static_assert(kSlot % 128 == 0 && (8 * kPitch) % 128 == 0, "tensor-copy destinations are 128-byte aligned");
  // Tensor-copy destinations must be 128-byte aligned: the slots and the glu halves (8 rows) are
  // multiples of 128 from this base.
  extern __shared__ __align__(128) uint4 mmq_bf_smem[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(mmq_bf_smem);
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  uint8_t* ring = smem + size_t(warp) * D * kSlot;
  const uint32_t ring_s = smem_u32(ring);
  const uint32_t bar_s = smem_u32(smem + size_t(kBfWarps) * D * kSlot) + uint32_t(8 * D * warp);
  uint8_t* xb = smem + bf_ring_bytes<T, NT>();
  float* scl = reinterpret_cast<float*>(xb + x_bytes(NT, a.kr_max));  // 16-byte aligned
  int* s_last = reinterpret_cast<int*>(reinterpret_cast<uint8_t*>(scl) + scale_bytes<T>());

  const WorkSplit ws = work_split(a);
  const int split = ws.split, grp = ws.grp, G = ws.G, kst0 = ws.kst0, nk = ws.nk, n_items = ws.n_items;
  probe_start(a);

  // Producer (lane 0): item i = (tile ordinal i / nk, stage i % nk) into slot i % D: one tensor-map
  // box of the warp's 16 rows, the tile's rows r0 + 16 warp .., or with glu 8 gate rows then the
  // same 8 up rows r0 + 8 warp .. (store_tile's pairing). Rows past the matrix arrive as zeros.
  int p_item = 0;
  TileRef p_tile = tile_ref(a, grp < a.n_tiles ? grp : 0);
  auto issue = [&](uint32_t slot) {
    const int ti = p_item / nk, kk = p_item - ti * nk;
    if (kk == 0) p_tile = tile_ref(a, grp + ti * G);
    const uint32_t bar = bar_s + 8u * slot, dst = ring_s + slot * uint32_t(kSlot);
    const int x = bf_box_x<T>(kst0 + kk);
    mbar_arrive_expect_tx(bar, uint32_t(kSlot));
    if (a.glu) {
      const int y = int(p_tile.r0) + 8 * warp;
      tma_load_2d(dst, &a.tmap[0], x, y, bar);
      tma_load_2d(dst + uint32_t(8 * kPitch), &a.tmap[1], x, y, bar);
    } else {
      tma_load_2d(dst, &a.tmap[p_tile.seg], x, int(p_tile.r0) + 16 * warp, bar);
    }
    ++p_item;
  };
  if (lane == 0) {
    for (int s = 0; s < D; ++s) mbar_init(bar_s + 8u * s, 1u);
    fence_barrier_init();
    for (int s = 0; s < D; ++s)
      if (p_item < n_items) issue(uint32_t(s));
  }
  __syncwarp();

  pdl_wait();  // x is written by the previous kernel; y / residual may still be read by it
  probe_clock(a, kMmaQ8ProbePdl);

  const XCtx xc = stage_x_ctx_bf<NT>(a, kst0, nk, xb, lane);
  const uint32_t a_lane = uint32_t(((lane & 7) + 8 * ((lane >> 3) & 1)) * kPitch + 16 * (lane >> 4));
  probe_clock(a, kMmaQ8ProbeX);
  __syncthreads();  // x staged

  float acc[1][2][NT];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[0][h][j] = 0.0f;

  for (int it = 0; it < n_items; ++it) {
    const int slot = it % D;
    if (it < kMmaQ8ProbeItems) probe_clock(a, kMmaQ8ProbeItem0 + 2 * it);
    mbar_wait(bar_s + 8u * uint32_t(slot), uint32_t((it / D) & 1));
    if (it < kMmaQ8ProbeItems) probe_clock(a, kMmaQ8ProbeItem0 + 2 * it + 1);
    const int ti = it / nk, kk = it - ti * nk;
    StageCtx sc;
    sc.wrow = ring + size_t(slot) * kSlot;
    sc.wrow_s = ring_s + uint32_t(slot * kSlot) + a_lane;
    sc.scl = scl + 16 * warp * kScaleRowWords;
    sc.kk = kk;
    sc.off = bf_box_off<T>(kst0 + kk);
    if constexpr (T == GgmlType::Q4_K) stage_q4k_bf<NT>(sc, xc, lane, acc);
    else stage_q6k_bf<NT>(sc, xc, lane, acc);
    __syncwarp();  // every lane is done with the slot
    if (lane == 0 && p_item < n_items) {
      fence_proxy_async_smem();  // the slot's generic-proxy reads before the async-proxy refill
      issue(uint32_t(slot));
    }
    if (kk == nk - 1) finish_tile<NT, true>(a, grp + ti * G, split, warp, lane, s_last, acc);
  }
  probe_end(a, n_items);
  pdl_trigger();
#else
  __trap();  // routed here only where sm90_code_ok() (bf_warp_rings in matmul_mma_q8.cu)
#endif
}

// ---- per-type entry points (defined in matmul_mma_q8_inst_<type>.cu) --------------------------
template <GgmlType T>
const void* kernel_of(int nt) {
  switch (nt) {
    case 1: return reinterpret_cast<const void*>(mma_q8_kernel<T, 1, false>);
    case 2: return reinterpret_cast<const void*>(mma_q8_kernel<T, 2, false>);
    case 4: return reinterpret_cast<const void*>(mma_q8_kernel<T, 4, false>);
    case 8: return reinterpret_cast<const void*>(mma_q8_kernel<T, 8, false>);
    default: return reinterpret_cast<const void*>(mma_q8_kernel<T, 16, false>);
  }
}
template <GgmlType T>
void launch_of(int nt, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) {
  switch (nt) {
    case 1: launch_kernel(mma_q8_kernel<T, 1, false>, dim3(grid), dim3(kThreadsOf<1>), smem, stream, a); break;
    case 2: launch_kernel(mma_q8_kernel<T, 2, false>, dim3(grid), dim3(kThreadsOf<2>), smem, stream, a); break;
    case 4: launch_kernel(mma_q8_kernel<T, 4, false>, dim3(grid), dim3(kThreadsOf<4>), smem, stream, a); break;
    case 8: launch_kernel(mma_q8_kernel<T, 8, false>, dim3(grid), dim3(kThreadsOf<8>), smem, stream, a); break;
    default: launch_kernel(mma_q8_kernel<T, 16, false>, dim3(grid), dim3(kThreadsOf<16>), smem, stream, a); break;
  }
}

#define FATHOM_MMQ_DECLARE(name)                   \
  const void* mmq_kernel_##name(int nt);           \
  void mmq_launch_##name(int nt, const Args& a, unsigned grid, size_t smem, cudaStream_t stream);
FATHOM_MMQ_DECLARE(q4_0)
FATHOM_MMQ_DECLARE(q4_1)
FATHOM_MMQ_DECLARE(q5_0)
FATHOM_MMQ_DECLARE(q5_1)
FATHOM_MMQ_DECLARE(q8_0)
FATHOM_MMQ_DECLARE(q4_k)
FATHOM_MMQ_DECLARE(q5_k)
FATHOM_MMQ_DECLARE(q6_k)
// The bf16 variant (matmul_mma_q8_inst_q4_k_bf.cu, _q6_k_bf.cu): the per-warp-ring kernel, or for
// Q4_K with rings == false the CTA-ring mma_q8_kernel<Q4_K, NT, true> (FATHOM_MMQ_BF_RING=0, A/B runs).
const void* mmq_kernel_q4_k_bf(int nt, bool rings);
void mmq_launch_q4_k_bf(int nt, bool rings, const Args& a, unsigned grid, size_t smem, cudaStream_t stream);
const void* mmq_kernel_q6_k_bf(int nt, bool rings);
void mmq_launch_q6_k_bf(int nt, bool rings, const Args& a, unsigned grid, size_t smem, cudaStream_t stream);
#undef FATHOM_MMQ_DECLARE

// The bf16 variant's kernel of type T at NT: the per-warp-ring kernel, or (Q4_K, rings == false)
// the CTA-ring one. Q6_K has only the per-warp-ring form (the host asks for it only with rings).
template <GgmlType T, int NT>
const void* kernel_bf(bool rings) {
  if constexpr (T == GgmlType::Q4_K)
    if (!rings) return reinterpret_cast<const void*>(mma_q8_kernel<GgmlType::Q4_K, NT, true>);
  return reinterpret_cast<const void*>(mma_q8_bf_kernel<T, NT>);
}
template <GgmlType T, int NT>
void launch_bf(bool rings, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) {
  if constexpr (T == GgmlType::Q4_K) {
    if (!rings) {
      launch_kernel(mma_q8_kernel<GgmlType::Q4_K, NT, true>, dim3(grid), dim3(kThreadsOf<NT, true>), smem, stream, a);
      return;
    }
  }
  launch_kernel(mma_q8_bf_kernel<T, NT>, dim3(grid), dim3(kThreadsOf<NT, true>), smem, stream, a);
}
// The body of a bf16-variant instance file: NT 2, 4, 8, 16 (the host never plans the variant at
// NT 1: nt_for(n, true) >= 2).
#define FATHOM_MMQ_BF_INSTANCE(name, TYPE)                                                               \
  const void* mmq_kernel_##name(int nt, bool rings) {                                                    \
    switch (nt) {                                                                                        \
      case 2: return kernel_bf<GgmlType::TYPE, 2>(rings);                                                \
      case 4: return kernel_bf<GgmlType::TYPE, 4>(rings);                                                \
      case 8: return kernel_bf<GgmlType::TYPE, 8>(rings);                                                \
      default: return kernel_bf<GgmlType::TYPE, 16>(rings);                                              \
    }                                                                                                    \
  }                                                                                                      \
  void mmq_launch_##name(int nt, bool rings, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) { \
    switch (nt) {                                                                                        \
      case 2: launch_bf<GgmlType::TYPE, 2>(rings, a, grid, smem, stream); break;                         \
      case 4: launch_bf<GgmlType::TYPE, 4>(rings, a, grid, smem, stream); break;                         \
      case 8: launch_bf<GgmlType::TYPE, 8>(rings, a, grid, smem, stream); break;                         \
      default: launch_bf<GgmlType::TYPE, 16>(rings, a, grid, smem, stream); break;                       \
    }                                                                                                    \
  }

// The body of an instance file: the five token-count kernels of one weight type.
#define FATHOM_MMQ_INSTANCE(name, TYPE)                                                           \
  const void* mmq_kernel_##name(int nt) { return kernel_of<GgmlType::TYPE>(nt); }                 \
  void mmq_launch_##name(int nt, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) {    \
    launch_of<GgmlType::TYPE>(nt, a, grid, smem, stream);                                        \
  }

}  // namespace fathom::cuda::mmq

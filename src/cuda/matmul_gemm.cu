// Prefill matmul (n_tokens > 16): y = x @ W^T (+ bias) (+ residual).
//   x (n_tokens, cols) fp32, W (rows, cols) GGUF blocks, y (n_tokens, rows) fp32.
// Flops 2 * n_tokens * rows * cols: compute-bound for long prompts, so tensor cores.
//
// Path 1 (F16/BF16 weights with a GemmContext): cuBLASLt, fp32 accumulate and fp32 output; x is
// first converted to the weight's 16-bit type in ctx.scratch; beta = 1 folds in the residual.
// Path 2 (quantized weights with a GemmContext that has a dequant scratch): x is converted to
// bf16 once, then W is walked in chunks of R rows: rows [r0, r0 + R) are dequantized to bf16
// (R, cols) in ctx.dequant (dequantize_rows_bf16_kernel) and one cuBLASLt GEMM writes columns
// [r0, r0 + R) of y (a sub-matrix of y with leading dimension rows). R is as large as the scratch
// holds (a multiple of kGemmChunkAlign), balanced over the chunks, so the whole matrix is never
// expanded at once unless it fits the budget. Cost per chunk: read R * row_bytes, write and
// re-read R * cols * 2 bytes, then a bf16 GEMM at cuBLASLt speed. The dequantization is a
// streaming kernel (one 16-byte store per thread, see dequantize_rows_bf16_kernel); its cost per
// token falls with the prefill chunk (engine.cpp), which is why the engine makes that chunk large.
// Paths 1 and 2 take W as a column slice of a wider matrix (MatmulParams::w_ld) and can skip
// the x conversion when the previous call left the same x in the scratch (x16_ready).
// cuBLASLt plans (paths 1 and 2): with GemmContext::plans, each GEMM shape's descriptors and
// algorithm are made once (the heuristic's first pick, or the fastest of up to 8 candidates timed
// by gemm_plan_tune at engine load) and looked up afterwards, so a call costs a hash lookup and
// the cublasLtMatmul enqueue on the host instead of ~8 descriptor calls and a heuristic query.
// Path 3 (every other case, and F32 weights): a tiled kernel that dequantizes ONE 64 x 32 weight
// tile at a time into shared memory as bf16 (quant_blocks.cuh), converts the matching 64 x 32 x
// tile to bf16, and multiplies with wmma 16x16x16 bf16 -> fp32 fragments. 4 warps, 64 x 64
// output tile, each warp 32 x 32 (2 x 2 fragments). The weight is never expanded in global memory.
// bf16 operands (path 2, and path 1 for BF16): relative error per product ~2^-8, so
// results match the fp32 reference to about 2^-8 * sum|w x| (tests derive their tolerance from
// that). Path 3 splits both operands into bf16 hi + lo (three MMAs, see gemm_tile_kernel):
// ~2^-16 per product. The tiled kernel is not pipelined (no cp.async / wgmma); see
// docs/perf/NOTES.md.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/quant_blocks.cuh"

namespace fathom::cuda {
namespace {

constexpr int kBM = 64;   // tokens per tile
constexpr int kBN = 64;   // weight rows per tile
constexpr int kBK = 32;   // one dequantization unit
constexpr int kLd = kBK + 8;   // bf16 row pitch of the operand tiles (multiple of 8, 80 bytes)
constexpr int kLdc = kBN + 4;  // fp32 pitch of the epilogue tile

struct GemmArgs {
  const uint8_t* w;
  int64_t row_bytes;
  int64_t rows;
  int64_t n_units;
  const float* x;
  float* y;
  const float* bias;
  const float* residual;
  int64_t n_tokens;
};

// Operand precision (kSplit, the default; FATHOM_GEMM_TILE_SPLIT=0 gives the single-bf16 kernel
// for A/B runs): each operand is split into two bf16 values, v = hi + lo with hi = bf16(v) and
// lo = bf16(v - hi) (v - hi is exact in fp32), and three MMAs into the same fp32 accumulator add
// xh wh + xl wh + xh wl. The dropped xl wl and the rounding of lo leave ~2^-16 relative per
// product (x and w carry 16 significant bits) instead of bf16's 2^-8. The bf16 x bf16 error is
// what the model inherits: emulated on the CPU reference (tests/test_operand_rounding.cpp), the
// 40-token prefill of the tiny test models ends ~0.7-1.0e-2 relative from the fp32 logits, at the
// engine test's 1e-2 tolerance; with the split ~1e-5 (docs/perf/q2k_prefill_bf16.md). Same
// range as fp32 (no fp16 overflow of large activations). Cost: 3x the MMAs and twice the operand
// tile stores; the fp32 epilogue tile reuses the operand tiles' shared memory.
template <GgmlType T, bool kSplit>
__global__ void __launch_bounds__(128) gemm_tile_kernel(const __grid_constant__ GemmArgs a) {
  using namespace nvcuda;
  constexpr int kTile = kBM * kLd;  // elements of one bf16 operand tile (kBM == kBN)
  constexpr int kOperandBytes = (kSplit ? 4 : 2) * kTile * 2;
  constexpr int kEpilogueBytes = kBM * kLdc * 4;
  __shared__ __align__(128) unsigned char smem[kOperandBytes > kEpilogueBytes ? kOperandBytes : kEpilogueBytes];
  // Tiles: x hi, w hi, then (kSplit) x lo, w lo; the lo tile of an operand is 2 kTile past its hi.
  __nv_bfloat16* xs = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* ws = xs + kTile;
  float* cs = reinterpret_cast<float*>(smem);  // after the K loop only

  const int64_t m0 = int64_t(blockIdx.y) * kBM;  // token tile
  const int64_t n0 = int64_t(blockIdx.x) * kBN;  // weight-row tile
  const int warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t cols = a.n_units * kUnit;

  // hi of v at dst[i] (and with kSplit lo at dst[i + 2 kTile], the lo tile of the same operand).
  auto put = [](__nv_bfloat16* dst, int i, float v) {
    const __nv_bfloat16 h = __float2bfloat16(v);
    dst[i] = h;
    if constexpr (kSplit) dst[i + 2 * kTile] = __float2bfloat16(v - __bfloat162float(h));
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t u = 0; u < a.n_units; ++u) {
    // x tile: 64 tokens x 32 cols; thread -> (token, 16-col half).
    {
      const int r = threadIdx.x >> 1, h = (threadIdx.x & 1) * 16;
      const int64_t tok = m0 + r;
      __nv_bfloat16* dst = xs + r * kLd + h;
      if (tok < a.n_tokens) {
        const float4* src = reinterpret_cast<const float4*>(a.x + tok * cols + u * kUnit + h);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float4 f = src[q];
          put(dst, 4 * q, f.x);
          put(dst, 4 * q + 1, f.y);
          put(dst, 4 * q + 2, f.z);
          put(dst, 4 * q + 3, f.w);
        }
      } else {
#pragma unroll
        for (int q = 0; q < 16; ++q) put(dst, q, 0.0f);
      }
    }
    // weight tile: 64 rows x one unit; threads 0..63 dequantize one row's unit each.
    if (threadIdx.x < kBN) {
      const int r = threadIdx.x;
      const int64_t row = n0 + r;
      float v[32];
      if (row < a.rows) {
        dequant_unit<T>(a.w + row * a.row_bytes, u, v);
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) v[i] = 0.0f;
      }
      __nv_bfloat16* dst = ws + r * kLd;
#pragma unroll
      for (int i = 0; i < 32; ++i) put(dst, i, v[i]);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], xs + (wm * 32 + i * 16) * kLd + kk, kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], ws + (wn * 32 + j * 16) * kLd + kk, kLd);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      if constexpr (kSplit) {
        // xl wh, then xh wl: the lo fragments replace the hi ones they are multiplied against.
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fl[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fl[i], xs + 2 * kTile + (wm * 32 + i * 16) * kLd + kk, kLd);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fl[i], fb[j], acc[i][j]);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], ws + 2 * kTile + (wn * 32 + j * 16) * kLd + kk, kLd);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

  // The last __syncthreads above ends every read of the operand tiles: cs may overwrite them.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kLdc + wn * 32 + j * 16, acc[i][j], kLdc,
                              wmma::mem_row_major);
  __syncthreads();
  for (int i = threadIdx.x; i < kBM * kBN; i += blockDim.x) {
    const int r = i / kBN, c = i % kBN;
    const int64_t tok = m0 + r, row = n0 + c;
    if (tok < a.n_tokens && row < a.rows) {
      float out = cs[r * kLdc + c];
      if (a.bias) out += a.bias[row];
      if (a.residual) out += a.residual[tok * a.rows + row];
      a.y[tok * a.rows + row] = out;
    }
  }
}

// fp32 -> H, four elements per thread step (16-byte loads, 8-byte stores): n4 = n / 4, x and out
// 16- and 8-byte aligned (convert_x checks, else n4 = 0); the scalar loop takes the rest.
template <typename H>
__global__ void convert_kernel(const float* __restrict__ x, H* __restrict__ out, int64_t n, int64_t n4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < n4; i += stride) {
    const float4 f = reinterpret_cast<const float4*>(x)[i];
    uint2 o;
    if constexpr (std::is_same<H, __half>::value) {
      __half2 a = __floats2half2_rn(f.x, f.y), b = __floats2half2_rn(f.z, f.w);
      o.x = *reinterpret_cast<uint32_t*>(&a);
      o.y = *reinterpret_cast<uint32_t*>(&b);
    } else {
      __nv_bfloat162 a = __floats2bfloat162_rn(f.x, f.y), b = __floats2bfloat162_rn(f.z, f.w);
      o.x = *reinterpret_cast<uint32_t*>(&a);
      o.y = *reinterpret_cast<uint32_t*>(&b);
    }
    reinterpret_cast<uint2*>(out)[i] = o;
  }
  for (int64_t i = 4 * n4 + first; i < n; i += stride) {
    if constexpr (std::is_same<H, __half>::value) out[i] = __float2half_rn(x[i]);
    else out[i] = __float2bfloat16(x[i]);
  }
}

__global__ void add_bias_kernel(float* y, const float* b, int64_t n_tokens, int64_t rows) {
  const int64_t n = n_tokens * rows;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % rows];
}

// ---- dequantization of a chunk of rows to bf16 -----------------------------------------------
// One thread per "octet" (8 consecutive elements of a row: one 16-byte bf16 store), so a warp's
// stores cover 512 contiguous bytes and its loads one 256-element K-quant super-block (or eight
// 32-element blocks of the legacy types) -- every byte read once per warp, header bytes broadcast.
// The previous kernel gave a thread a whole 32-element unit: 64 bytes stored as four 16-byte
// stores 64 bytes apart across the warp, and 2-4x fewer threads per byte in flight.
// dequant_octet<T>(row, e, v): elements [e, e + 8) of the row (e a multiple of 8) -> v[0..7], with
// the same arithmetic as dequant_unit<T> (quant_blocks.cuh), so results are unchanged.

// 8 bytes from a 2-byte aligned address as two little-endian words.
__device__ __forceinline__ uint2 ld8_a2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return make_uint2(uint32_t(h[0]) | (uint32_t(h[1]) << 16), uint32_t(h[2]) | (uint32_t(h[3]) << 16));
}
__device__ __forceinline__ uint2 ld8_a4(const uint8_t* p) {
  const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
  return make_uint2(q[0], q[1]);
}
__device__ __forceinline__ uint2 ld8_a8(const uint8_t* p) { return *reinterpret_cast<const uint2*>(p); }
__device__ __forceinline__ uint32_t byte8(uint2 w, int k) {
  return ((k < 4 ? w.x : w.y) >> (8 * (k & 3))) & 0xFFu;
}

// Any type without its own version below: the whole 32-element unit, then the octet's 8 (with
// constant indices, so the unit stays in registers); 4x the arithmetic, same loads.
template <GgmlType T>
__device__ __forceinline__ void dequant_octet(const uint8_t* row, int64_t e, float v[8]) {
  float unit[32];
  dequant_unit<T>(row, e >> 5, unit);
  const int s = int(e >> 3) & 3;
#pragma unroll
  for (int k = 0; k < 8; ++k)
    v[k] = s == 0 ? unit[k] : s == 1 ? unit[8 + k] : s == 2 ? unit[16 + k] : unit[24 + k];
}

template <>
__device__ __forceinline__ void dequant_octet<GgmlType::F32>(const uint8_t* row, int64_t e, float v[8]) {
  const float4* p = reinterpret_cast<const float4*>(row + e * 4);
  const float4 a = p[0], b = p[1];
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::F16>(const uint8_t* row, int64_t e, float v[8]) {
  const uint4 q = *reinterpret_cast<const uint4*>(row + e * 2);
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
    v[2 * j] = f.x; v[2 * j + 1] = f.y;
  }
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::BF16>(const uint8_t* row, int64_t e, float v[8]) {
  const uint4 q = *reinterpret_cast<const uint4*>(row + e * 2);
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[2 * j] = __uint_as_float(w[j] << 16);
    v[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
  }
}
// Legacy blocks of 32: element i < 16 is the low nibble of byte i, element 16 + i the high one;
// octet s (0..3) reads bytes 8 (s & 1) .. + 8, nibble (s >> 1).
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q4_0>(const uint8_t* row, int64_t e, float v[8]) {
  const int s = int(e >> 3) & 3;
  const uint8_t* b = row + (e >> 5) * 18;
  const float d = half_at(b);
  const uint2 w = ld8_a2(b + 2 + 8 * (s & 1));
  const int shift = (s >> 1) * 4;
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = d * (float((byte8(w, k) >> shift) & 0xF) - 8.0f);
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q4_1>(const uint8_t* row, int64_t e, float v[8]) {
  const int s = int(e >> 3) & 3;
  const uint8_t* b = row + (e >> 5) * 20;
  const float d = half_at(b), m = half_at(b + 2);
  const uint2 w = ld8_a4(b + 4 + 8 * (s & 1));
  const int shift = (s >> 1) * 4;
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = d * float((byte8(w, k) >> shift) & 0xF) + m;
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q5_0>(const uint8_t* row, int64_t e, float v[8]) {
  const int s = int(e >> 3) & 3;
  const uint8_t* b = row + (e >> 5) * 22;
  const float d = half_at(b);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(b + 2);
  const uint32_t qh = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
  const uint2 w = ld8_a2(b + 6 + 8 * (s & 1));
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t q = byte8(w, k);
    const int j = 8 * (s & 1) + k;
    const uint32_t x = s < 2 ? (q & 0xF) | (((qh >> j) << 4) & 0x10) : (q >> 4) | ((qh >> (j + 12)) & 0x10);
    v[k] = d * (float(x) - 16.0f);
  }
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q5_1>(const uint8_t* row, int64_t e, float v[8]) {
  const int s = int(e >> 3) & 3;
  const uint8_t* b = row + (e >> 5) * 24;
  const float d = half_at(b), m = half_at(b + 2);
  const uint32_t qh = *reinterpret_cast<const uint32_t*>(b + 4);
  const uint2 w = ld8_a4(b + 8 + 8 * (s & 1));
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t q = byte8(w, k);
    const int j = 8 * (s & 1) + k;
    const uint32_t x = s < 2 ? (q & 0xF) | (((qh >> j) << 4) & 0x10) : (q >> 4) | ((qh >> (j + 12)) & 0x10);
    v[k] = d * float(x) + m;
  }
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q8_0>(const uint8_t* row, int64_t e, float v[8]) {
  const int s = int(e >> 3) & 3;
  const uint8_t* b = row + (e >> 5) * 34;
  const float d = half_at(b);
  const uint2 w = ld8_a2(b + 2 + 8 * s);
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = d * float(int8_t(byte8(w, k)));
}
// K-quants: unit u = e / 32 is sub-block j = u & 7 of super-block u >> 3; element l of a unit
// reads byte l of its 32-byte run, so octet s reads bytes 8s .. 8s + 8.
// Q4_K / Q5_K header (16-byte aligned): d, dmin, then the 12 bytes of packed 6-bit scales and
// mins, read as one 16-byte load. The scale/min of sub-block j as k4_scale_min computes it, but
// without its branch on j < 4: the 8 lanes of a warp that share a super-block take both sides.
__device__ __forceinline__ void k4_header(const uint8_t* b, int j, float& d1, float& m1) {
  const uint4 h = *reinterpret_cast<const uint4*>(b);
  auto sbyte = [&h](int i) {  // scales[i], i < 12
    const uint32_t w = i < 4 ? h.y : (i < 8 ? h.z : h.w);
    return (w >> (8 * (i & 3))) & 0xFFu;
  };
  const uint32_t a = sbyte(j), c = sbyte(j + 4), lo = sbyte(j & 3);  // lo: scales[j - 4] for j >= 4
  const bool first = j < 4;
  const uint32_t sc = first ? (a & 63) : ((c & 0xF) | ((lo >> 6) << 4));
  const uint32_t m = first ? (c & 63) : ((c >> 4) | ((a >> 6) << 4));
  const float d = __half2float(__ushort_as_half(uint16_t(h.x & 0xFFFFu)));
  const float dmin = __half2float(__ushort_as_half(uint16_t(h.x >> 16)));
  d1 = d * float(sc);
  m1 = dmin * float(m);
}

template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q4_K>(const uint8_t* row, int64_t e, float v[8]) {
  const int64_t u = e >> 5;
  const int s = int(e >> 3) & 3, j = int(u & 7);
  const uint8_t* b = row + (u >> 3) * 144;
  float d1, m1;
  k4_header(b, j, d1, m1);
  const int shift = (j & 1) * 4;
  const uint2 w = ld8_a8(b + 16 + 32 * (j >> 1) + 8 * s);
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = d1 * float((byte8(w, k) >> shift) & 0xF) - m1;
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q5_K>(const uint8_t* row, int64_t e, float v[8]) {
  const int64_t u = e >> 5;
  const int s = int(e >> 3) & 3, j = int(u & 7);
  const uint8_t* b = row + (u >> 3) * 176;
  float d1, m1;
  k4_header(b, j, d1, m1);
  const int shift = (j & 1) * 4;
  const uint2 h = ld8_a8(b + 16 + 8 * s);
  const uint2 w = ld8_a8(b + 48 + 32 * (j >> 1) + 8 * s);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t lo = (byte8(w, k) >> shift) & 0xF;
    const uint32_t hi = (byte8(h, k) >> j) & 1u;
    v[k] = d1 * float(lo | (hi << 4)) - m1;
  }
}
template <>
__device__ __forceinline__ void dequant_octet<GgmlType::Q6_K>(const uint8_t* row, int64_t e, float v[8]) {
  const int64_t u = e >> 5;
  const int s = int(e >> 3) & 3, j = int(u & 7);
  const int half = j >> 2, k4 = j & 3;
  const uint8_t* b = row + (u >> 3) * 210;
  const float d = half_at(b + 208);
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192) + 8 * half + 2 * k4;
  const float dd = d * float(scales[s >> 1]);  // elements 0..15 of the unit: scale 0, 16..31: 1
  const int lshift = (k4 >> 1) * 4, hshift = 2 * k4;
  // 2-byte loads: 210-byte super-blocks are only 2-byte aligned. (Picking 4-/8-byte loads by
  // the super-block's alignment measured slower on the H200: 64.3 vs 56.0 us for 14336 x 4096.)
  const uint2 ql = ld8_a2(b + 64 * half + 32 * (k4 & 1) + 8 * s);
  const uint2 qh = ld8_a2(b + 128 + 32 * half + 8 * s);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t lo = (byte8(ql, k) >> lshift) & 0xF;
    const uint32_t hi = (byte8(qh, k) >> hshift) & 3u;
    v[k] = dd * (float(int(lo | (hi << 4))) - 32.0f);
  }
}

__device__ __forceinline__ uint4 pack_bf16x8(const float v[8]) {
  uint4 r;
  __nv_bfloat162 h;
  h = __floats2bfloat162_rn(v[0], v[1]); r.x = *reinterpret_cast<uint32_t*>(&h);
  h = __floats2bfloat162_rn(v[2], v[3]); r.y = *reinterpret_cast<uint32_t*>(&h);
  h = __floats2bfloat162_rn(v[4], v[5]); r.z = *reinterpret_cast<uint32_t*>(&h);
  h = __floats2bfloat162_rn(v[6], v[7]); r.w = *reinterpret_cast<uint32_t*>(&h);
  return r;
}

// Rows [r0, r0 + n_rows) of W as bf16: out (n_rows, cols) row-major, octets_per_row = cols / 8,
// n_octets = n_rows * octets_per_row (< 2^31). A block iteration takes kDqThreads * kDqOctets
// consecutive octets; thread t does octets base + t + k * kDqThreads (k < kDqOctets), so each of
// its kDqOctets stores is a fully coalesced 512-byte warp store, and all its loads are issued
// before the first store. Memory-bound: n_rows * row bytes read, n_rows * cols * 2 written.
constexpr int kDqThreads = 256;
constexpr int kDqOctets = 4;

template <GgmlType T>
__global__ void __launch_bounds__(kDqThreads)
    dequantize_rows_bf16_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t r0,
                                uint32_t octets_per_row, uint32_t n_octets,
                                uint4* __restrict__ out) {
  const uint32_t per_block = uint32_t(kDqThreads) * kDqOctets;
  for (uint32_t base = blockIdx.x * per_block + threadIdx.x; base < n_octets;
       base += gridDim.x * per_block) {
    uint4 packed[kDqOctets];
#pragma unroll
    for (int k = 0; k < kDqOctets; ++k) {
      const uint32_t o = base + uint32_t(k) * kDqThreads;
      if (o < n_octets) {
        const uint32_t r = o / octets_per_row, c = o - r * octets_per_row;
        float v[8];
        dequant_octet<T>(w + (r0 + int64_t(r)) * row_bytes, int64_t(c) * 8, v);
        packed[k] = pack_bf16x8(v);
      }
    }
#pragma unroll
    for (int k = 0; k < kDqOctets; ++k) {
      const uint32_t o = base + uint32_t(k) * kDqThreads;
      if (o < n_octets) out[o] = packed[k];
    }
  }
}

void check_lt(cublasStatus_t s, const char* what) {
  FATHOM_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt ", what, " failed with status ", int(s));
}

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic assumes 256-byte
// aligned operands unless told otherwise, and a chunk's output starts inside y.
uint32_t pointer_alignment(const void* ptr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
  if (a == 0) return 256;
  return uint32_t(std::min<uintptr_t>(256, a & (~a + 1)));
}

// One cuBLASLt GEMM with fp32 accumulation and fp32 output, in cuBLAS's column-major terms:
//   D (m x n, ld ldd) = op_T(A: k x m, ld lda) * (B: k x n, ld k) + beta * C (same layout as D).
// Row-major reading: A is W-rows (m, k) with rows lda apart (lda > k: a column slice of a wider
// W), B is x16 (n, k), D is y (n, ldd) restricted to m columns, i.e. y[:, 0:m] = x16 @ A^T (+ C).
// beta = 1 when c is a residual, else c = d and beta = 0.
struct LtGemm {
  cudaDataType_t dt;  // A and B: CUDA_R_16F or CUDA_R_16BF
  const void* a;
  int64_t m, k, lda;
  const void* b;
  int64_t n;
  const float* c;
  float* d;
  int64_t ldd;
  float beta;
};

}  // namespace

// ---- per-shape plans ---------------------------------------------------------------------------
namespace lt_plan {

// Everything the heuristic's answer depends on: sizes, leading dimensions, types, transposes,
// epilogue, whether C is read (beta != 0), the operands' alignments and the workspace limit.
// The pointers themselves are not part of it: a plan serves every call of the same shape.
struct PlanKey {
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  int32_t ab_type = 0, cd_type = 0, compute = 0;
  int32_t trans_a = 0, trans_b = 0, epilogue = 0;
  int32_t beta_nonzero = 0;
  uint32_t align[4] = {0, 0, 0, 0};  // A B C D, bytes (pointer_alignment)
  uint64_t workspace_bytes = 0;
  auto tie() const {
    return std::tie(m, n, k, lda, ldb, ldd, ab_type, cd_type, compute, trans_a, trans_b, epilogue,
                    beta_nonzero, align[0], align[1], align[2], align[3], workspace_bytes);
  }
  bool operator==(const PlanKey& o) const { return tie() == o.tie(); }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    auto mix = [&h](uint64_t v) {
      h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    };
    for (int64_t v : {k.m, k.n, k.k, k.lda, k.ldb, k.ldd}) mix(uint64_t(v));
    for (int32_t v : {k.ab_type, k.cd_type, k.compute, k.trans_a, k.trans_b, k.epilogue, k.beta_nonzero})
      mix(uint32_t(v));
    for (uint32_t v : k.align) mix(v);
    mix(k.workspace_bytes);
    return size_t(h);
  }
};

// The prepared descriptors of one shape and its algorithm. C and D share one layout.
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lcd = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool tuned = false;  // algo picked by timing (gemm_plan_tune), not the heuristic's first
};

void destroy_plan(LtPlan& p) {
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  if (p.la) cublasLtMatrixLayoutDestroy(p.la);
  if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
  if (p.lcd) cublasLtMatrixLayoutDestroy(p.lcd);
  p = LtPlan{};
}

}  // namespace lt_plan

// One engine's (one stream's) plans. Not thread-safe: the engine calls matmuls from one thread.
struct GemmPlanCache {
  std::unordered_map<lt_plan::PlanKey, lt_plan::LtPlan, lt_plan::PlanKeyHash> plans;
  int64_t hits = 0, misses = 0, timed = 0;
  GemmPlanCache() { plans.reserve(256); }
  GemmPlanCache(const GemmPlanCache&) = delete;  // owns cuBLASLt descriptors
  GemmPlanCache& operator=(const GemmPlanCache&) = delete;
  ~GemmPlanCache() {
    for (auto& kv : plans) lt_plan::destroy_plan(kv.second);
  }
};

namespace {

using lt_plan::LtPlan;
using lt_plan::PlanKey;
using lt_plan::destroy_plan;

PlanKey plan_key(const GemmContext& ctx, const LtGemm& g) {
  PlanKey k;
  k.m = g.m;
  k.n = g.n;
  k.k = g.k;
  k.lda = g.lda;
  k.ldb = g.k;
  k.ldd = g.ldd;
  k.ab_type = int32_t(g.dt);
  k.cd_type = int32_t(CUDA_R_32F);
  k.compute = int32_t(CUBLAS_COMPUTE_32F);
  k.trans_a = int32_t(CUBLAS_OP_T);
  k.trans_b = int32_t(CUBLAS_OP_N);
  k.epilogue = int32_t(CUBLASLT_EPILOGUE_DEFAULT);  // the bias is a separate kernel (add_bias)
  k.beta_nonzero = g.beta != 0.0f;
  k.align[0] = pointer_alignment(g.a);
  k.align[1] = pointer_alignment(g.b);
  k.align[2] = pointer_alignment(g.c);
  k.align[3] = pointer_alignment(g.d);
  k.workspace_bytes = ctx.workspace_bytes;
  return k;
}

// Descriptors for `k`; on a cuBLASLt error the partial plan is destroyed and the error thrown.
LtPlan make_plan(const PlanKey& k) {
  LtPlan p;
  try {
    check_lt(cublasLtMatmulDescCreate(&p.op, cublasComputeType_t(k.compute), CUDA_R_32F),
             "MatmulDescCreate");
    const cublasOperation_t ta = cublasOperation_t(k.trans_a), tb = cublasOperation_t(k.trans_b);
    const cublasLtEpilogue_t ep = cublasLtEpilogue_t(k.epilogue);
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "set TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "set TRANSB");
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)), "set EPILOGUE");
    const cudaDataType_t ab = cudaDataType_t(k.ab_type), cd = cudaDataType_t(k.cd_type);
    check_lt(cublasLtMatrixLayoutCreate(&p.la, ab, uint64_t(k.k), uint64_t(k.m), k.lda), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&p.lb, ab, uint64_t(k.k), uint64_t(k.n), k.ldb), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&p.lcd, cd, uint64_t(k.m), uint64_t(k.n), k.ldd), "layout C/D");
  } catch (...) {
    destroy_plan(p);
    throw;
  }
  return p;
}

// Up to `want` heuristic candidates for plan p (those with a SUCCESS state), best first.
int heuristic(const GemmContext& ctx, const PlanKey& k, const LtPlan& p, int want,
              cublasLtMatmulHeuristicResult_t* out) {
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
  int found = 0;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &k.workspace_bytes, sizeof(k.workspace_bytes));
  const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; ++i)
    s = cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &k.align[i], sizeof(k.align[i]));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.la, p.lb, p.lcd, p.lcd, pref, want, out, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check_lt(s, "AlgoGetHeuristic");
  int n = 0;
  for (int i = 0; i < found; ++i)
    if (out[i].state == CUBLAS_STATUS_SUCCESS) out[n++] = out[i];
  return n;
}

[[noreturn]] void fail_no_algo(const LtGemm& g, GgmlType type) {
  fail("cuBLASLt found no algorithm for a ", g.n, "x", g.k, " @ ", g.k, "x", g.m, " ",
       ggml_type_name(type), " matmul (ld ", g.ldd, ")");
}

cublasStatus_t run_plan(const GemmContext& ctx, const LtPlan& p, const cublasLtMatmulAlgo_t& algo,
                        const LtGemm& g, cudaStream_t stream) {
  const float alpha = 1.0f;
  return cublasLtMatmul(ctx.lt, p.op, &alpha, g.a, p.la, g.b, p.lb, &g.beta, g.c, p.lcd, g.d, p.lcd,
                        &algo, ctx.workspace, ctx.workspace_bytes, stream);
}

// The plan of key k (the shape of g) in ctx.plans, made (descriptors + the heuristic's first
// pick) on first use. Host work only, so a first use inside CUDA graph capture is fine.
// `count`: tally a hit or a miss (gemm_plan_tune looks plans up without counting).
LtPlan& cached_plan(const GemmContext& ctx, const PlanKey& k, const LtGemm& g, GgmlType type,
                    bool count) {
  GemmPlanCache& cache = *ctx.plans;
  auto it = cache.plans.find(k);
  if (it != cache.plans.end()) {
    if (count) ++cache.hits;
    return it->second;
  }
  if (count) ++cache.misses;
  LtPlan p = make_plan(k);
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  try {
    found = heuristic(ctx, k, p, 1, &heur);
  } catch (...) {
    destroy_plan(p);
    throw;
  }
  if (found == 0) {
    destroy_plan(p);
    fail_no_algo(g, type);
  }
  p.algo = heur.algo;
  return cache.plans.emplace(k, p).first->second;
}

void lt_matmul(const GemmContext& ctx, const LtGemm& g, GgmlType type, cudaStream_t stream) {
  FATHOM_CHECK(g.lda >= g.k, "matmul: leading dimension ", g.lda, " of W under its ", g.k, " columns");
  if (ctx.plans) {
    const LtPlan& p = cached_plan(ctx, plan_key(ctx, g), g, type, true);
    check_lt(run_plan(ctx, p, p.algo, g, stream), "Matmul");
    return;
  }
  // No cache (tests, direct callers): descriptors and the heuristic per call.
  const PlanKey k = plan_key(ctx, g);
  LtPlan p = make_plan(k);
  cublasLtMatmulHeuristicResult_t heur{};
  cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
  int found = 0;
  try {
    found = heuristic(ctx, k, p, 1, &heur);
    if (found > 0) s = run_plan(ctx, p, heur.algo, g, stream);
  } catch (...) {
    destroy_plan(p);
    throw;
  }
  destroy_plan(p);
  if (found == 0) fail_no_algo(g, type);
  check_lt(s, "Matmul");
}

// x (n_tokens, cols) fp32 -> ctx.scratch in H (fp16 or bf16); nothing when p.x16_ready says the
// scratch already holds it.
template <typename H>
void convert_x(const MatmulParams& p, cudaStream_t stream) {
  const GemmContext& ctx = *p.gemm;
  const size_t need = size_t(p.n_tokens) * p.cols * 2;
  FATHOM_CHECK(ctx.scratch && ctx.scratch_bytes >= need, "matmul: GemmContext scratch of ",
               ctx.scratch_bytes, " bytes, ", need, " needed");
  if (p.x16_ready) return;
  const int64_t n = p.n_tokens * p.cols;
  const bool vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(ctx.scratch) % 8 == 0;
  const int64_t n4 = vec ? n / 4 : 0;
  const unsigned grid = unsigned(std::min<int64_t>((std::max(n4, n - 4 * n4) + 255) / 256, 4096));
  convert_kernel<H><<<grid, 256, 0, stream>>>(p.x, static_cast<H*>(ctx.scratch), n, n4);
  CUDA_CHECK_LAUNCH();
}

void add_bias(const MatmulParams& p, cudaStream_t stream) {
  if (!p.bias) return;
  const int64_t ny = p.n_tokens * p.rows;
  add_bias_kernel<<<unsigned(std::min<int64_t>((ny + 255) / 256, 4096)), 256, 0, stream>>>(
      p.y, p.bias, p.n_tokens, p.rows);
  CUDA_CHECK_LAUNCH();
}

// Deterministic values in [-0.5, 0.5) as H: operands for timing candidates (gemm_plan_tune).
template <typename H>
__global__ void fill_pattern_kernel(H* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t h = uint32_t(i) * 2654435761u;
    const float f = float(h >> 16) * (1.0f / 65536.0f) - 0.5f;
    if constexpr (std::is_same<H, __half>::value) out[i] = __float2half_rn(f);
    else out[i] = __float2bfloat16(f);
  }
}

// Elements from one row of W to the next.
int64_t w_ld(const MatmulParams& p) { return p.w_ld > 0 ? p.w_ld : p.cols; }

// y (n_tokens, rows) = x16 (n_tokens, cols) @ W^T; in cuBLAS's column-major terms
// D (rows x n_tokens, ld rows) = op_T(W: cols x rows, ld w_ld) * (x16: cols x n_tokens, ld cols).
LtGemm half_gemm(const MatmulParams& p) {
  return LtGemm{p.type == GgmlType::F16 ? CUDA_R_16F : CUDA_R_16BF, p.w, p.rows, p.cols, w_ld(p),
                p.gemm->scratch, p.n_tokens, p.residual ? p.residual : p.y, p.y, p.rows,
                p.residual ? 1.0f : 0.0f};
}

void gemm_cublaslt(const MatmulParams& p, cudaStream_t stream) {
  if (p.type == GgmlType::F16) convert_x<__half>(p, stream);
  else convert_x<__nv_bfloat16>(p, stream);
  lt_matmul(*p.gemm, half_gemm(p), p.type, stream);
  add_bias(p, stream);
}

// Quantized W in chunks of R rows (gemm_dequant_chunk_rows), each dequantized to bf16 in
// ctx.dequant and multiplied by cuBLASLt. Chunk [r0, r0 + R): A = the bf16 chunk (R, cols),
// D = y + r0 with ld rows (columns r0.. of y), C = residual + r0 (same layout) when there is a
// residual. r0 is a multiple of kGemmChunkAlign = 64, so y + r0 keeps y's 256-byte alignment.
// The chunks run in stream order, so chunk i+1's dequant overwrites the scratch only after
// chunk i's GEMM has read it. The bias is added once over all of y at the end.
LtGemm chunk_gemm(const MatmulParams& p, int64_t r0, int64_t nr) {
  return LtGemm{CUDA_R_16BF, p.gemm->dequant, nr, p.cols, p.cols, p.gemm->scratch, p.n_tokens,
                (p.residual ? p.residual : p.y) + r0, p.y + r0, p.rows, p.residual ? 1.0f : 0.0f};
}

// Rows [r0, r0 + nr) of p.w -> bf16 (nr, cols) in ctx.dequant.
void dequantize_chunk(const MatmulParams& p, int64_t r0, int64_t nr, cudaStream_t stream) {
  launch_dequantize_rows_bf16(p.type, p.w, int64_t(ggml_row_bytes(p.type, w_ld(p))), r0, nr, p.cols,
                              p.gemm->dequant, stream);
}

void gemm_dequant_cublaslt(const MatmulParams& p, int64_t chunk, cudaStream_t stream) {
  convert_x<__nv_bfloat16>(p, stream);
  for (int64_t r0 = 0; r0 < p.rows; r0 += chunk) {
    const int64_t nr = std::min(chunk, p.rows - r0);
    dequantize_chunk(p, r0, nr, stream);
    lt_matmul(*p.gemm, chunk_gemm(p, r0, nr), p.type, stream);
  }
  add_bias(p, stream);
}

// Events of one gemm_plan_tune call, destroyed however it ends.
struct TuneEvents {
  std::vector<cudaEvent_t> ev;
  explicit TuneEvents(int n) : ev(size_t(n), nullptr) {
    for (cudaEvent_t& e : ev) CUDA_CHECK(cudaEventCreate(&e));
  }
  ~TuneEvents() {
    for (cudaEvent_t e : ev)
      if (e) cudaEventDestroy(e);
  }
  TuneEvents(const TuneEvents&) = delete;
  TuneEvents& operator=(const TuneEvents&) = delete;
};

// Median time (ms) of one launch of `algo` for g: one warm-up, then `reps` timed groups of
// kTuneInner back-to-back launches (short GEMMs are a few us; a group keeps the ~0.5 us event
// resolution out of the ranking). Negative when the candidate fails to launch.
constexpr int kTuneInner = 3;

double time_candidate(const GemmContext& ctx, const LtPlan& plan, const cublasLtMatmulAlgo_t& algo,
                      const LtGemm& g, TuneEvents& te, int reps, cudaStream_t stream) {
  if (run_plan(ctx, plan, algo, g, stream) != CUBLAS_STATUS_SUCCESS) {
    cudaGetLastError();
    return -1.0;
  }
  for (int r = 0; r < reps; ++r) {
    CUDA_CHECK(cudaEventRecord(te.ev[size_t(r)], stream));
    for (int i = 0; i < kTuneInner; ++i)
      if (run_plan(ctx, plan, algo, g, stream) != CUBLAS_STATUS_SUCCESS) {
        cudaGetLastError();
        CUDA_CHECK(cudaStreamSynchronize(stream));
        return -1.0;
      }
  }
  CUDA_CHECK(cudaEventRecord(te.ev[size_t(reps)], stream));
  CUDA_CHECK(cudaEventSynchronize(te.ev[size_t(reps)]));
  std::vector<float> ms(static_cast<size_t>(reps));
  for (int r = 0; r < reps; ++r)
    CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(r)], te.ev[size_t(r)], te.ev[size_t(r) + 1]));
  std::sort(ms.begin(), ms.end());
  return double(ms[size_t(reps / 2)]) / kTuneInner;
}

}  // namespace

void launch_dequantize_rows_bf16(GgmlType type, const void* w, int64_t row_bytes, int64_t r0,
                                 int64_t n_rows, int64_t cols, void* out, cudaStream_t stream) {
  if (n_rows <= 0) return;
  FATHOM_CHECK(cols > 0 && cols % kUnit == 0, "dequantize_rows_bf16: cols ", cols,
               " is not a positive multiple of ", kUnit);
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(out) % 16 == 0, "dequantize_rows_bf16: output not 16-byte aligned");
  const int64_t n_octets = n_rows * (cols / 8);
  FATHOM_CHECK(n_octets < (int64_t(1) << 31), "dequantize_rows_bf16: ", n_rows, " x ", cols,
               " elements in one launch (at most 2^34)");
  const int64_t per_block = int64_t(kDqThreads) * kDqOctets;
  const unsigned grid = unsigned(std::min<int64_t>((n_octets + per_block - 1) / per_block, 65535));
  const bool ok = dispatch_qtype(type, [&](auto tc) {
    dequantize_rows_bf16_kernel<decltype(tc)::value><<<grid, kDqThreads, 0, stream>>>(
        static_cast<const uint8_t*>(w), row_bytes, r0, uint32_t(cols / 8), uint32_t(n_octets),
        static_cast<uint4*>(out));
    CUDA_CHECK_LAUNCH();
  });
  FATHOM_CHECK(ok, "matmul: weight type ", ggml_type_name(type), " is not supported on CUDA");
}

int gemm_x16_kind(const MatmulParams& p) {
  if (p.n_tokens <= kGemvMaxTokens || !p.gemm || !p.gemm->lt) return 0;
  if (p.type == GgmlType::F16) return 1;
  if (p.type == GgmlType::BF16) return 2;
  return gemm_dequant_chunk_rows(p) > 0 ? 2 : 0;
}

int64_t gemm_dequant_chunk_rows(const MatmulParams& p) {
  const GemmContext* ctx = p.gemm;
  if (!ctx || !ctx->lt || !ctx->dequant || p.rows <= 0 || p.cols <= 0) return 0;
  if (p.rows * p.cols < ctx->dequant_min_elements) return 0;
  if (p.type == GgmlType::F32 || p.type == GgmlType::F16 || p.type == GgmlType::BF16 ||
      !matmul_supports(p.type))
    return 0;
  // Whole matrix when it fits; else as many rows as fit, a multiple of kGemmChunkAlign, evened out
  // over the chunks (4096 rows in a 3200-row budget -> 2 x 2048, not 3200 + 896: a thin last
  // chunk would leave most SMs idle in its GEMM).
  const int64_t fit = int64_t(ctx->dequant_bytes / (size_t(p.cols) * 2));
  if (fit >= p.rows) return p.rows;
  const int64_t max_rows = fit / kGemmChunkAlign * kGemmChunkAlign;
  if (max_rows == 0) return 0;
  const int64_t n_chunks = (p.rows + max_rows - 1) / max_rows;
  const int64_t even = (p.rows + n_chunks - 1) / n_chunks;
  return std::min(max_rows, (even + kGemmChunkAlign - 1) / kGemmChunkAlign * kGemmChunkAlign);
}

void launch_matmul_gemm(const MatmulParams& p, cudaStream_t stream) {
  if (p.n_tokens <= 0) return;
  const int64_t blk = ggml_type_traits(p.type).block_elems;
  FATHOM_CHECK(p.cols > 0 && p.cols % kUnit == 0 && p.cols % blk == 0 && p.rows > 0,
               "matmul_gemm: cols ", p.cols, " must be a positive multiple of ",
               blk > kUnit ? blk : kUnit, " for ", ggml_type_name(p.type), " (rows ", p.rows, ")");
  FATHOM_CHECK(p.n_tokens / kBM < 65535, "matmul_gemm: n_tokens ", p.n_tokens, " too large");
  FATHOM_CHECK(p.w_ld == 0 || (p.w_ld >= p.cols && p.w_ld % blk == 0 && p.w_ld % kUnit == 0),
               "matmul_gemm: w_ld ", p.w_ld, " must be 0 or a multiple of ", blk, " >= cols ", p.cols);
  if ((p.type == GgmlType::F16 || p.type == GgmlType::BF16) && p.gemm && p.gemm->lt) {
    gemm_cublaslt(p, stream);
    return;
  }
  if (const int64_t chunk = gemm_dequant_chunk_rows(p); chunk > 0) {
    gemm_dequant_cublaslt(p, chunk, stream);
    return;
  }
  GemmArgs a{static_cast<const uint8_t*>(p.w), int64_t(ggml_row_bytes(p.type, w_ld(p))), p.rows,
             p.cols / kUnit, p.x, p.y, p.bias, p.residual, p.n_tokens};
  const dim3 grid(unsigned((p.rows + kBN - 1) / kBN), unsigned((p.n_tokens + kBM - 1) / kBM));
  static const bool split = [] {  // FATHOM_GEMM_TILE_SPLIT=0: single bf16 operands (A/B runs)
    const char* e = std::getenv("FATHOM_GEMM_TILE_SPLIT");
    return !(e && e[0] == '0' && e[1] == '\0');
  }();
  const bool ok = dispatch_qtype(p.type, [&](auto tc) {
    if (split) gemm_tile_kernel<decltype(tc)::value, true><<<grid, 128, 0, stream>>>(a);
    else gemm_tile_kernel<decltype(tc)::value, false><<<grid, 128, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH();
  });
  FATHOM_CHECK(ok, "matmul: weight type ", ggml_type_name(p.type), " is not supported on CUDA");
}

// ---- plan cache and timed pick -----------------------------------------------------------------

GemmPlanCache* gemm_plan_cache_create() { return new GemmPlanCache(); }

void gemm_plan_cache_destroy(GemmPlanCache* cache) { delete cache; }

GemmPlanStats gemm_plan_cache_stats(const GemmPlanCache* cache) {
  GemmPlanStats s;
  if (!cache) return s;
  s.plans = int64_t(cache->plans.size());
  s.hits = cache->hits;
  s.misses = cache->misses;
  s.timed = cache->timed;
  return s;
}

// Worked example, Llama-3-8B Q4_K_M at ubatch 512 (dequant scratch ~95 MB): the 32 layers give
// 7 matrices each but only 6 distinct shapes (q/o 4096x4096 whole, k/v 1024x4096, gate/up in
// chunks of 7168 rows, down in chunks of 2048 rows of 14336 cols, o with a residual): 6 x 8
// candidates x (1 + 5 x 3) launches of 10-120 us, ~0.1-0.3 s once at load.
GemmTuneReport gemm_plan_tune(const MatmulParams* ps, size_t n, const GemmTuneOptions& opt,
                              cudaStream_t stream) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto elapsed_ms = [&] { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); };
  GemmTuneReport rep;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &cap));
  const bool timing = opt.time_candidates && cap == cudaStreamCaptureStatusNone;
  const int reps = std::max(1, opt.reps);
  const int want = std::max(1, std::min(opt.max_candidates, 32));
  std::vector<cublasLtMatmulHeuristicResult_t> heur(static_cast<size_t>(want));
  std::unique_ptr<TuneEvents> events;
  std::unordered_map<const LtPlan*, bool> seen;  // this call's shapes

  for (size_t i = 0; i < n; ++i) {
    const MatmulParams& p = ps[i];
    const GemmContext* ctx = p.gemm;
    if (!ctx || !ctx->lt || p.n_tokens <= kGemvMaxTokens || p.rows <= 0 || p.cols <= 0) continue;
    const bool half = p.type == GgmlType::F16 || p.type == GgmlType::BF16;
    const int64_t chunk = half ? p.rows : gemm_dequant_chunk_rows(p);
    if (chunk <= 0) continue;  // tiled kernel
    FATHOM_CHECK(ctx->plans, "gemm_plan_tune: the GemmContext has no plan cache");
    bool x_ready = false;
    for (int64_t r0 = 0; r0 < p.rows; r0 += chunk) {
      const int64_t nr = std::min(chunk, p.rows - r0);
      const LtGemm g = half ? half_gemm(p) : chunk_gemm(p, r0, nr);
      const PlanKey k = plan_key(*ctx, g);
      LtPlan& plan = cached_plan(*ctx, k, g, p.type, false);
      if (!seen.emplace(&plan, true).second) continue;
      ++rep.shapes;
      if (!timing || plan.tuned) continue;
      if (elapsed_ms() > opt.budget_ms) {
        ++rep.skipped;
        continue;
      }
      // Operands: the pattern as x16 in scratch, the real weights (whole, or this chunk as bf16).
      if (!x_ready) {
        const size_t need = size_t(p.n_tokens) * size_t(p.cols) * 2;
        FATHOM_CHECK(ctx->scratch && ctx->scratch_bytes >= need, "matmul: GemmContext scratch of ",
                     ctx->scratch_bytes, " bytes, ", need, " needed");
        const int64_t ne = p.n_tokens * p.cols;
        const unsigned grid = unsigned(std::min<int64_t>((ne + 255) / 256, 4096));
        if (p.type == GgmlType::F16)
          fill_pattern_kernel<__half><<<grid, 256, 0, stream>>>(static_cast<__half*>(ctx->scratch), ne);
        else
          fill_pattern_kernel<__nv_bfloat16>
              <<<grid, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(ctx->scratch), ne);
        CUDA_CHECK_LAUNCH();
        x_ready = true;
      }
      if (!half) dequantize_chunk(p, r0, nr, stream);
      const int found = heuristic(*ctx, k, plan, want, heur.data());
      if (!events) events = std::make_unique<TuneEvents>(reps + 1);
      int best = -1;
      double best_ms = 0.0;
      for (int c = 0; c < found; ++c) {
        const double ms = time_candidate(*ctx, plan, heur[size_t(c)].algo, g, *events, reps, stream);
        if (ms < 0.0) continue;
        ++rep.candidates;
        if (best < 0 || ms < best_ms) {
          best = c;
          best_ms = ms;
        }
      }
      if (best < 0) continue;  // keep the heuristic's first pick
      plan.algo = heur[size_t(best)].algo;
      plan.tuned = true;
      ++ctx->plans->timed;
      ++rep.timed;
      if (best != 0) ++rep.changed;
    }
  }
  if (cap == cudaStreamCaptureStatusNone) CUDA_CHECK(cudaStreamSynchronize(stream));
  rep.wall_ms = elapsed_ms();
  return rep;
}

}  // namespace fathom::cuda

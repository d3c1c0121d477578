// Decode-time matmul (n_tokens 1..16): y[t][r] = sum_k x[t][k] * W[r][k] (+ bias[r]) (+ res[t][r]).
// Quantized weights at 1..8 tokens go to the int8-activation kernel (matmul_gemv_q8.cu) unless
// FATHOM_GEMV_Q8=0, F16/BF16 at 1..8 tokens to matmul_gemv_f16.cu unless FATHOM_GEMV_HALF=0;
// this file's fp32-dequantizing kernel serves F32, 9..16 tokens and those switches.
//
// Bytes: the whole weight once (rows * row_bytes) + x + y: memory-bound; the floor is
// weight_bytes / DRAM bandwidth (Llama-3-8B 4096x4096 Q4_K: 9.4 MB -> ~2.2 us at 4.3 TB/s).
//
// Work split: a block of 8 warps owns 16 / S consecutive rows; the warps form 8 / S groups of S
// warps, each group owns 2 rows and its S warps split the row's 32-element units between them
// (S = ksplit in {1, 2, 4, 8}, chosen at launch, see choose_ksplit). The block stages a chunk
// of x for all NB batch columns in shared memory (fp32, each 32-element unit padded to 36 floats
// so the lanes' 16-byte reads of 32 different units fall in distinct banks) plus the two
// half-unit sums of x per unit. Lane l of slice s of a group takes the chunk's units
// 32 s + l, 32 s + l + 32 S, ... (spans of 32 consecutive units dealt round-robin to the
// slices): it loads the unit of BOTH its rows first (two independent loads in flight), turns
// them into small-integer floats and per-half affine maps (dequant_unit_raw, quant_blocks.cuh),
// then for every batch column reads x once for both rows and accumulates d * sum(q x) +
// m * sum(x) -- one FMA per weight element and column. Every weight byte is read once per launch
// whatever the batch. Adjacent lanes read adjacent units: a warp's loads cover one contiguous
// stretch of each row. Optionally (kPrefetchRowBytes, off: it measured slower) each warp first
// asks L2 to prefetch the weight bytes it will read in the chunk. Partial sums are reduced with warp shuffles, then (S > 1) across
// the S warps of a group through shared memory. The x stage is 36 KB whatever NB (8192
// elements for NB = 1; longer rows loop over chunks).
//
// NB (padded batch width) is a template argument in {1, 2, 4, 8, 16}: 5 x 13 types = 65 small
// instantiations (ksplit is a run-time value); columns past n_tokens are zero in shared memory
// and never stored.
#include <cuda_runtime.h>

#include <cstdlib>

#include "cuda/cuda_check.cuh"
#include "cuda/matmul_gemv_f16.cuh"
#include "cuda/matmul_gemv_q8.cuh"
#include "cuda/ops.cuh"
#include "cuda/quant_blocks.cuh"

namespace fathom::cuda {
namespace {

constexpr int kGemvWarps = 8;
constexpr int kGemvRowsPerWarp = 2;
constexpr int kGemvRowsPerBlock = kGemvWarps * kGemvRowsPerWarp;
constexpr int kUnitStride = 36;          // floats per staged unit (32 + 4 pad)
constexpr int kStageUnits = 256;          // 32-element units of x staged, over all columns
constexpr int kStageFloats = kStageUnits * kUnitStride;  // 9216 floats = 36 KB (+ 2 KB of sums)
// L2 prefetch per row and chunk: off. Measured on the H200 (fathom bench tg128, synthetic,
// Q4_K_M): prefetching 2 KB/row cost 1-12% (llama3-8b 206 -> 180 tok/s, llama3.2-1b 753 -> 698,
// gemma3-270m 818 -> 787); FATHOM_GEMV_PREFETCH_BYTES=2048 turns it back on for experiments.
constexpr int64_t kPrefetchRowBytes = 0;  // L2 prefetch per row and chunk, see gemv_kernel

struct GemvArgs {
  const uint8_t* w;
  int64_t row_bytes;
  int64_t rows;
  int64_t n_units;      // cols / 32
  const float* x;       // (n_tokens, cols)
  float* y;             // (n_tokens, rows)
  const float* bias;
  const float* residual;
  int n_tokens;
  int ksplit;           // S: warps that split one row pair's units (1, 2, 4 or 8)
  int64_t prefetch_row_bytes;  // L2 prefetch per row and chunk (0: none), see gemv_kernel
};

// L2 prefetch of the 128-byte line holding p: a hint with no register result, so the warp does
// not wait for it.
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const __grid_constant__ GemvArgs a) {
  extern __shared__ float4 gemv_smem4[];
  float* xs = reinterpret_cast<float*>(gemv_smem4);
  constexpr int kChunkUnits = kStageUnits / NB;  // units of x staged per column
  // Half-unit sums of x, (NB, kChunkUnits) pairs: sum of elements 0..15 and 16..31 of a unit.
  float2* xsum = reinterpret_cast<float2*>(xs + kStageFloats);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // NB >= 8 stages at most 32 units per chunk, one span: never split (choose_ksplit agrees), and
  // a compile-time S = 1 keeps the reduction code out of the largest instantiations.
  const int S = kChunkUnits > 32 ? a.ksplit : 1;
  const int group = warp / S, slice = warp - group * S;  // row pair of the block, slice of K
  const int64_t row0 = int64_t(blockIdx.x) * (kGemvRowsPerBlock / S) + group * kGemvRowsPerWarp;
  const int64_t cols = a.n_units * kUnit;
  const uint8_t* wrow[kGemvRowsPerWarp];
  bool row_ok[kGemvRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kGemvRowsPerWarp; ++r) {
    row_ok[r] = row0 + r < a.rows;
    wrow[r] = a.w + (row_ok[r] ? row0 + r : 0) * a.row_bytes;
  }

  float acc[kGemvRowsPerWarp][NB];
#pragma unroll
  for (int r = 0; r < kGemvRowsPerWarp; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;

  for (int64_t u0 = 0; u0 < a.n_units; u0 += kChunkUnits) {
    const int cu = int(a.n_units - u0 < kChunkUnits ? a.n_units - u0 : kChunkUnits);
    // Prefetch this warp's weight bytes of the chunk: per span of 32 units, units [su, se) of
    // each row are bytes [su * row_bytes / n_units, se * row_bytes / n_units) (exact for the
    // legacy and plain types; for K types su, se are multiples of 8 units, i.e. super-block
    // bounds). One 128-byte line per lane, a span is at most 4 KB (F32) = 32 lines. Spans stop
    // once kPrefetchRowBytes per row are requested (the first span always goes): enough for a
    // whole 4096-column Q4_K row, while the lines in flight stay well inside L2 (3 blocks x 16
    // rows x ~2-4 KB per SM, ~15-25 MB on 132 SMs).
    int64_t requested = 0;
    for (int su = slice * 32; su < cu && requested < a.prefetch_row_bytes; su += 32 * S) {
      const int se = su + 32 < cu ? su + 32 : cu;
      const int64_t lo = (u0 + su) * a.row_bytes / a.n_units;
      const int64_t hi = (u0 + se) * a.row_bytes / a.n_units;
      requested += hi - lo;
#pragma unroll
      for (int r = 0; r < kGemvRowsPerWarp; ++r) {
        if (!row_ok[r]) continue;
        // Absolute 128-byte lines, so the line holding byte hi - 1 is always covered.
        const uintptr_t end = reinterpret_cast<uintptr_t>(wrow[r]) + uintptr_t(hi);
        for (uintptr_t p = ((reinterpret_cast<uintptr_t>(wrow[r]) + uintptr_t(lo)) & ~uintptr_t(127)) +
                           128u * unsigned(lane);
             p < end; p += 32u * 128u)
          prefetch_l2(reinterpret_cast<const void*>(p));
      }
    }
    __syncthreads();  // the previous chunk is no longer read
    // Stage x[c][u0*32 .. (u0+cu)*32) as float4s; columns >= n_tokens read as zero.
    const int n4 = NB * cu * 8;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
      const int c = i / (cu * 8), rem = i - c * cu * 8, uu = rem >> 3, q = rem & 7;
      float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
      if (c < a.n_tokens)
        val = *reinterpret_cast<const float4*>(a.x + int64_t(c) * cols + (u0 + uu) * kUnit + q * 4);
      *reinterpret_cast<float4*>(xs + (c * kChunkUnits + uu) * kUnitStride + q * 4) = val;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < NB * cu; i += blockDim.x) {
      const int c = i / cu, uu = i - c * cu;
      const float* xp = xs + (c * kChunkUnits + uu) * kUnitStride;
      float lo = 0.0f, hi = 0.0f;
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        lo += xp[e];
        hi += xp[16 + e];
      }
      xsum[c * kChunkUnits + uu] = make_float2(lo, hi);
    }
    __syncthreads();
    for (int uu = slice * 32 + lane; uu < cu; uu += 32 * S) {
      // Both rows' weight loads are issued before either is used.
      float q[kGemvRowsPerWarp][32];
      UnitScale sc[kGemvRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kGemvRowsPerWarp; ++r) dequant_unit_raw<T>(wrow[r], u0 + uu, q[r], sc[r]);
#pragma unroll
      for (int c = 0; c < NB; ++c) {
        const float* xp = xs + (c * kChunkUnits + uu) * kUnitStride;
        float s_lo[kGemvRowsPerWarp], s_hi[kGemvRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kGemvRowsPerWarp; ++r) s_lo[r] = s_hi[r] = 0.0f;
#pragma unroll
        for (int k4 = 0; k4 < 8; ++k4) {
          const float4 xv = *reinterpret_cast<const float4*>(xp + 4 * k4);
#pragma unroll
          for (int r = 0; r < kGemvRowsPerWarp; ++r) {
            float& sacc = k4 < 4 ? s_lo[r] : s_hi[r];
            sacc = fmaf(q[r][4 * k4], xv.x, sacc);
            sacc = fmaf(q[r][4 * k4 + 1], xv.y, sacc);
            sacc = fmaf(q[r][4 * k4 + 2], xv.z, sacc);
            sacc = fmaf(q[r][4 * k4 + 3], xv.w, sacc);
          }
        }
        const float2 xsv = xsum[c * kChunkUnits + uu];
#pragma unroll
        for (int r = 0; r < kGemvRowsPerWarp; ++r)
          acc[r][c] += sc[r].d[0] * s_lo[r] + sc[r].m[0] * xsv.x + sc[r].d[1] * s_hi[r] +
                       sc[r].m[1] * xsv.y;
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kGemvRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      float s = acc[r][c];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
      acc[r][c] = s;  // every lane holds the warp's sum
    }
  }

  if (S == 1) {
#pragma unroll
    for (int r = 0; r < kGemvRowsPerWarp; ++r) {
      const int64_t row = row0 + r;
      if (lane == 0 && row < a.rows) {
        const float b = a.bias ? a.bias[row] : 0.0f;
#pragma unroll
        for (int c = 0; c < NB; ++c) {
          if (c < a.n_tokens) {
            float out = acc[r][c] + b;
            if (a.residual) out += a.residual[int64_t(c) * a.rows + row];
            a.y[int64_t(c) * a.rows + row] = out;
          }
        }
      }
    }
    return;
  }

  // S > 1 (uniform over the block): the S slices of a group add their partials through shared
  // memory, reusing the x stage: part[warp][r * NB + c], 8 x 2 x NB <= 256 floats.
  __syncthreads();  // every warp has finished reading the x stage
  float* part = xs;
  constexpr int kPart = kGemvRowsPerWarp * NB;  // <= 32: one lane per (row, column)
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kGemvRowsPerWarp; ++r)
#pragma unroll
      for (int c = 0; c < NB; ++c) part[warp * kPart + r * NB + c] = acc[r][c];
  }
  __syncthreads();
  if (slice == 0 && lane < kPart) {
    const int r = lane / NB, c = lane - r * NB;
    const int64_t row = row0 + r;
    if (row < a.rows && c < a.n_tokens) {
      float out = 0.0f;
      for (int k = 0; k < S; ++k) out += part[(warp + k) * kPart + lane];
      if (a.bias) out += a.bias[row];
      if (a.residual) out += a.residual[int64_t(c) * a.rows + row];
      a.y[int64_t(c) * a.rows + row] = out;
    }
  }
}

template <GgmlType T, int NB>
void launch_gemv_nb(const GemvArgs& a, cudaStream_t stream) {
  const size_t smem = size_t(kStageFloats) * sizeof(float) + size_t(kStageUnits) * sizeof(float2);
  const int rows_per_block = kGemvRowsPerBlock / (kStageUnits / NB > 32 ? a.ksplit : 1);  // as the kernel's S
  const unsigned grid = unsigned((a.rows + rows_per_block - 1) / rows_per_block);
  gemv_kernel<T, NB><<<grid, kGemvWarps * 32, smem, stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

// K split S: the smallest of 1, 2, 4, 8 that gives the grid >= 2 blocks per SM, but no larger
// than needed to give every slice at least one span of 32 units of a staged chunk (a slice
// with no units would only add a barrier). Rows are the first source of parallelism because a
// split re-stages x per block and adds a shared-memory reduction.
// Worked examples on an H200 (132 SMs, target 264 blocks), batch 1 (chunk 256 units):
//   rows 256,  cols 640,  Q5_0: 20 units < one span -> S = 1, 16 blocks (the L2 prefetch is
//     what shortens it: weight and x latencies overlap);
//   rows 640,  cols 2048, Q4_K: 64 units = 2 spans -> S = 2, 40 -> 80 blocks, 1 unit per lane;
//   rows 1024, cols 4096, any:  128 units = 4 spans -> S = 4, 64 -> 256 blocks;
//   rows 4096, cols 4096:        S = 2, 256 -> 512 blocks (4 per SM; 2 before);
//   rows 14336, cols 4096:       S = 1, 896 blocks.
// Batch 16 stages only 16 units per chunk (less than a span): always S = 1.
int choose_ksplit(int64_t rows, int64_t n_units, int chunk_units, int sm_count) {
  const int64_t units = n_units < chunk_units ? n_units : chunk_units;
  const int64_t target_blocks = 2 * int64_t(sm_count);
  int s = 1;
  while (s < kGemvWarps && 32 * (2 * s - 1) < units &&
         (rows + kGemvRowsPerBlock / s - 1) / (kGemvRowsPerBlock / s) < target_blocks)
    s *= 2;
  return s;
}

}  // namespace

bool matmul_supports(GgmlType type) {
  return dispatch_qtype(type, [](auto) {});
}

void launch_matmul_gemv(const MatmulParams& p, cudaStream_t stream) {
  FATHOM_CHECK(p.n_tokens >= 1 && p.n_tokens <= kGemvMaxTokens, "matmul_gemv: n_tokens ",
               p.n_tokens, " outside 1..", kGemvMaxTokens);
  const int64_t blk = ggml_type_traits(p.type).block_elems;
  FATHOM_CHECK(p.cols > 0 && p.cols % kUnit == 0 && p.cols % blk == 0 && p.rows > 0,
               "matmul_gemv: cols ", p.cols, " must be a positive multiple of ", blk > kUnit ? blk : kUnit,
               " for ", ggml_type_name(p.type), " (rows ", p.rows, ")");
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.w) % 16 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0,
               "matmul_gemv: weight and x must be 16-byte aligned");
  if (gemv_half_supports(p)) {
    // F16 / BF16 at 1..8 tokens: 16-byte loads in flight, no shared stage (matmul_gemv_f16.cu).
    launch_gemv_half(p, stream);
    return;
  }
  if (gemv_q8_supports(p.type, p.n_tokens, p.cols)) {
    // Quantized weights at 1..8 tokens: int8 activations + dp4a (matmul_gemv_q8.cu).
    GemvQ8Params q;
    q.type = p.type;
    q.cols = p.cols;
    q.x = p.x;
    q.n_tokens = p.n_tokens;
    q.n_seg = 1;
    q.seg[0] = GemvQ8Segment{p.w, p.rows, p.y, p.bias};
    q.residual = p.residual;
    launch_gemv_q8(q, stream);
    return;
  }
  GemvArgs a{static_cast<const uint8_t*>(p.w), int64_t(ggml_row_bytes(p.type, p.cols)), p.rows,
             p.cols / kUnit, p.x, p.y, p.bias, p.residual, int(p.n_tokens), 1, kPrefetchRowBytes};
  // Measurement switches for A/B runs on the GPU (docs/perf/NOTES.md, GEMV v3): the L2 prefetch
  // budget per row and the largest K split. Read once; the defaults are the tuned values.
  static const int64_t prefetch_env = [] {
    const char* e = std::getenv("FATHOM_GEMV_PREFETCH_BYTES");
    return e ? std::atoll(e) : int64_t(-1);
  }();
  static const int max_split_env = [] {
    const char* e = std::getenv("FATHOM_GEMV_MAX_SPLIT");
    return e ? std::atoi(e) : 0;
  }();
  if (prefetch_env >= 0) a.prefetch_row_bytes = prefetch_env;
  int device = 0, sm_count = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  const int nb = a.n_tokens <= 1 ? 1 : a.n_tokens <= 2 ? 2 : a.n_tokens <= 4 ? 4 : a.n_tokens <= 8 ? 8 : 16;
  a.ksplit = choose_ksplit(a.rows, a.n_units, kStageUnits / nb, sm_count);
  if (max_split_env >= 1)
    while (a.ksplit > max_split_env) a.ksplit /= 2;
  const bool ok = dispatch_qtype(p.type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    if (a.n_tokens <= 1) launch_gemv_nb<T, 1>(a, stream);
    else if (a.n_tokens <= 2) launch_gemv_nb<T, 2>(a, stream);
    else if (a.n_tokens <= 4) launch_gemv_nb<T, 4>(a, stream);
    else if (a.n_tokens <= 8) launch_gemv_nb<T, 8>(a, stream);
    else launch_gemv_nb<T, 16>(a, stream);
  });
  FATHOM_CHECK(ok, "matmul: weight type ", ggml_type_name(p.type), " is not supported on CUDA");
}

void launch_matmul(const MatmulParams& p, cudaStream_t stream) {
  if (p.n_tokens <= 0) return;
  if (p.n_tokens <= kGemvMaxTokens) launch_matmul_gemv(p, stream);
  else launch_matmul_gemm(p, stream);
}

}  // namespace fathom::cuda

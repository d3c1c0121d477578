// Decode-time matmul (n_tokens 1..16): y[t][r] = sum_k x[t][k] * W[r][k] (+ bias[r]) (+ res[t][r]).
//
// Bytes: the whole weight once (rows * row_bytes) + x + y: memory-bound; the floor is
// weight_bytes / DRAM bandwidth (Llama-3-8B 4096x4096 Q4_K: 9.4 MB -> ~2.2 us at 4.3 TB/s).
//
// Work split: a block of 8 warps owns 16 consecutive rows (2 per warp). The block stages a chunk
// of x for all NB batch columns in shared memory (fp32, each 32-element unit padded to 36 floats
// so the lanes' 16-byte reads of 32 different units fall in distinct banks), then each lane of a
// warp takes units lane, lane+32, ... of its rows: it dequantizes the unit in registers
// (quant_blocks.cuh) and multiplies it against all NB columns, so every weight byte is read once
// per launch whatever the batch. Adjacent lanes read adjacent units: a warp's loads cover one
// contiguous stretch of the row. Partial sums are reduced with warp shuffles at the end.
// The x chunk is sized so the stage is 36 KB whatever NB (8192 elements for NB = 1).
//
// NB (padded batch width) is a template argument in {1, 2, 4, 8, 16}: 5 x 11 types = 55 small
// instantiations; columns past n_tokens are zero in shared memory and never stored.
#include <cuda_runtime.h>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/quant_blocks.cuh"

namespace fathom::cuda {
namespace {

constexpr int kGemvWarps = 8;
constexpr int kGemvRowsPerWarp = 2;
constexpr int kGemvRowsPerBlock = kGemvWarps * kGemvRowsPerWarp;
constexpr int kUnitStride = 36;          // floats per staged unit (32 + 4 pad)
constexpr int kStageFloats = 8192 * kUnitStride / kUnit;  // 9216 floats = 36 KB

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
};

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const __grid_constant__ GemvArgs a) {
  extern __shared__ float4 gemv_smem4[];
  float* xs = reinterpret_cast<float*>(gemv_smem4);
  constexpr int kChunkUnits = kStageFloats / kUnitStride / NB;  // units of x staged per column
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row0 = int64_t(blockIdx.x) * kGemvRowsPerBlock + warp * kGemvRowsPerWarp;
  const int64_t cols = a.n_units * kUnit;

  float acc[kGemvRowsPerWarp][NB];
#pragma unroll
  for (int r = 0; r < kGemvRowsPerWarp; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;

  for (int64_t u0 = 0; u0 < a.n_units; u0 += kChunkUnits) {
    const int cu = int(a.n_units - u0 < kChunkUnits ? a.n_units - u0 : kChunkUnits);
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
#pragma unroll
    for (int r = 0; r < kGemvRowsPerWarp; ++r) {
      const int64_t row = row0 + r;
      if (row >= a.rows) break;
      const uint8_t* wrow = a.w + row * a.row_bytes;
      for (int uu = lane; uu < cu; uu += 32) {
        float v[32];
        dequant_unit<T>(wrow, u0 + uu, v);
#pragma unroll
        for (int c = 0; c < NB; ++c) {
          const float* xp = xs + (c * kChunkUnits + uu) * kUnitStride;
          float s = 0.0f;
#pragma unroll
          for (int q = 0; q < 8; ++q) {
            const float4 xv = *reinterpret_cast<const float4*>(xp + 4 * q);
            s = fmaf(v[4 * q], xv.x, s);
            s = fmaf(v[4 * q + 1], xv.y, s);
            s = fmaf(v[4 * q + 2], xv.z, s);
            s = fmaf(v[4 * q + 3], xv.w, s);
          }
          acc[r][c] += s;
        }
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
      acc[r][c] = s;
    }
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
}

template <GgmlType T, int NB>
void launch_gemv_nb(const GemvArgs& a, cudaStream_t stream) {
  constexpr int kChunkUnits = kStageFloats / kUnitStride / NB;
  const size_t smem = size_t(NB) * kChunkUnits * kUnitStride * sizeof(float);
  const unsigned grid = unsigned((a.rows + kGemvRowsPerBlock - 1) / kGemvRowsPerBlock);
  gemv_kernel<T, NB><<<grid, kGemvWarps * 32, smem, stream>>>(a);
  CUDA_CHECK_LAUNCH();
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
  GemvArgs a{static_cast<const uint8_t*>(p.w), int64_t(ggml_row_bytes(p.type, p.cols)), p.rows,
             p.cols / kUnit, p.x, p.y, p.bias, p.residual, int(p.n_tokens)};
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

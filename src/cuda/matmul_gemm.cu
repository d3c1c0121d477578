// Prefill matmul (n_tokens > 16): y = x @ W^T (+ bias) (+ residual).
//   x (n_tokens, cols) fp32, W (rows, cols) GGUF blocks, y (n_tokens, rows) fp32.
// Flops 2 * n_tokens * rows * cols: compute-bound for long prompts, so tensor cores.
//
// Path 1 (F16/BF16 weights with a GemmContext): cuBLASLt, fp32 accumulate and fp32 output; x is
// first converted to the weight's 16-bit type in ctx.scratch; beta = 1 folds in the residual.
// Path 2 (every other case): a tiled kernel that dequantizes ONE 64 x 32 weight tile at a time
// into shared memory as bf16 (quant_blocks.cuh), converts the matching 64 x 32 x tile to bf16,
// and multiplies with wmma 16x16x16 bf16 -> fp32 fragments. 4 warps, 64 x 64 output tile,
// each warp 32 x 32 (2 x 2 fragments). The weight is never expanded in global memory.
// bf16 operands: relative error per product ~2^-9, so results match the fp32 reference to about
// 2^-9 * sqrt(cols) * rms(x) * rms(w) (tests derive their tolerance from that).
// Not yet pipelined (no cp.async / wgmma): a correctness-first version; see docs/perf/NOTES.md.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <type_traits>

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

template <GgmlType T>
__global__ void __launch_bounds__(128) gemm_tile_kernel(const __grid_constant__ GemmArgs a) {
  using namespace nvcuda;
  __shared__ __align__(128) __nv_bfloat16 xs[kBM * kLd];
  __shared__ __align__(128) __nv_bfloat16 ws[kBN * kLd];
  __shared__ __align__(128) float cs[kBM * kLdc];

  const int64_t m0 = int64_t(blockIdx.y) * kBM;  // token tile
  const int64_t n0 = int64_t(blockIdx.x) * kBN;  // weight-row tile
  const int warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t cols = a.n_units * kUnit;

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
          dst[4 * q] = __float2bfloat16(f.x);
          dst[4 * q + 1] = __float2bfloat16(f.y);
          dst[4 * q + 2] = __float2bfloat16(f.z);
          dst[4 * q + 3] = __float2bfloat16(f.w);
        }
      } else {
#pragma unroll
        for (int q = 0; q < 16; ++q) dst[q] = __float2bfloat16(0.0f);
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
      for (int i = 0; i < 32; ++i) dst[i] = __float2bfloat16(v[i]);
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
    }
    __syncthreads();
  }

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

template <typename H>
__global__ void convert_kernel(const float* x, H* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
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

void check_lt(cublasStatus_t s, const char* what) {
  FATHOM_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt ", what, " failed with status ", int(s));
}

// y (n_tokens, rows) = x16 (n_tokens, cols) @ W^T; in cuBLAS's column-major terms
// D (rows x n_tokens, ld rows) = op_T(W: cols x rows, ld cols) * (x16: cols x n_tokens, ld cols).
void gemm_cublaslt(const MatmulParams& p, cudaStream_t stream) {
  const GemmContext& ctx = *p.gemm;
  const bool f16 = p.type == GgmlType::F16;
  const size_t need = size_t(p.n_tokens) * p.cols * 2;
  FATHOM_CHECK(ctx.scratch && ctx.scratch_bytes >= need, "matmul: GemmContext scratch of ",
               ctx.scratch_bytes, " bytes, ", need, " needed");
  const int64_t n = p.n_tokens * p.cols;
  const unsigned grid = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  if (f16) convert_kernel<__half><<<grid, 256, 0, stream>>>(p.x, static_cast<__half*>(ctx.scratch), n);
  else convert_kernel<__nv_bfloat16><<<grid, 256, 0, stream>>>(p.x, static_cast<__nv_bfloat16*>(ctx.scratch), n);
  CUDA_CHECK_LAUNCH();

  const cudaDataType_t dt = f16 ? CUDA_R_16F : CUDA_R_16BF;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "set TRANSA");
  check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "set TRANSB");
  check_lt(cublasLtMatrixLayoutCreate(&la, dt, uint64_t(p.cols), uint64_t(p.rows), p.cols), "layout A");
  check_lt(cublasLtMatrixLayoutCreate(&lb, dt, uint64_t(p.cols), uint64_t(p.n_tokens), p.cols), "layout B");
  check_lt(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, uint64_t(p.rows), uint64_t(p.n_tokens), p.rows),
           "layout C");
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
  const size_t ws = ctx.workspace_bytes;
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                sizeof(ws)),
           "set workspace");
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(ctx.lt, op, la, lb, lc, lc, pref, 1, &heur, &found),
           "AlgoGetHeuristic");
  FATHOM_CHECK(found > 0, "cuBLASLt found no algorithm for a ", p.n_tokens, "x", p.cols, " @ ",
               p.cols, "x", p.rows, " ", ggml_type_name(p.type), " matmul");
  const float alpha = 1.0f, beta = p.residual ? 1.0f : 0.0f;
  const void* c = p.residual ? static_cast<const void*>(p.residual) : static_cast<const void*>(p.y);
  check_lt(cublasLtMatmul(ctx.lt, op, &alpha, p.w, la, ctx.scratch, lb, &beta, c, lc, p.y, lc,
                          &heur.algo, ctx.workspace, ws, stream),
           "Matmul");
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  if (p.bias) {
    const int64_t ny = p.n_tokens * p.rows;
    add_bias_kernel<<<unsigned(std::min<int64_t>((ny + 255) / 256, 4096)), 256, 0, stream>>>(
        p.y, p.bias, p.n_tokens, p.rows);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void launch_matmul_gemm(const MatmulParams& p, cudaStream_t stream) {
  if (p.n_tokens <= 0) return;
  const int64_t blk = ggml_type_traits(p.type).block_elems;
  FATHOM_CHECK(p.cols > 0 && p.cols % kUnit == 0 && p.cols % blk == 0 && p.rows > 0,
               "matmul_gemm: cols ", p.cols, " must be a positive multiple of ",
               blk > kUnit ? blk : kUnit, " for ", ggml_type_name(p.type), " (rows ", p.rows, ")");
  FATHOM_CHECK(p.n_tokens / kBM < 65535, "matmul_gemm: n_tokens ", p.n_tokens, " too large");
  if ((p.type == GgmlType::F16 || p.type == GgmlType::BF16) && p.gemm && p.gemm->lt) {
    gemm_cublaslt(p, stream);
    return;
  }
  GemmArgs a{static_cast<const uint8_t*>(p.w), int64_t(ggml_row_bytes(p.type, p.cols)), p.rows,
             p.cols / kUnit, p.x, p.y, p.bias, p.residual, p.n_tokens};
  const dim3 grid(unsigned((p.rows + kBN - 1) / kBN), unsigned((p.n_tokens + kBM - 1) / kBM));
  const bool ok = dispatch_qtype(p.type, [&](auto tc) {
    gemm_tile_kernel<decltype(tc)::value><<<grid, 128, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH();
  });
  FATHOM_CHECK(ok, "matmul: weight type ", ggml_type_name(p.type), " is not supported on CUDA");
}

}  // namespace fathom::cuda

// Decode GEMV for F16 / BF16 weights (matmul_gemv_f16.cu): 1..kGemvHalfMaxTokens tokens,
// fp32 x and accumulation, 16-byte weight loads several per lane in flight, no shared-memory
// stage. launch_matmul_gemv routes F16 / BF16 here when gemv_half_supports(p) (switch off with
// FATHOM_GEMV_HALF=0).
#pragma once

#include <cuda_runtime.h>

#include "cuda/ops.cuh"

namespace fathom::cuda {

constexpr int64_t kGemvHalfMaxTokens = 8;

bool gemv_half_supports(const MatmulParams& p);
void launch_gemv_half(const MatmulParams& p, cudaStream_t stream);

// Grouped form (the decode step's fusions, as GemvQ8Params does for the quantized types): up to
// three matrices of one type and column count in one launch (Q, K and V), or gate and up with the
// gated activation (glu: output act(x . gate) * (x . up) to seg[0].y, seg[1].y unused), and the
// llama-style pre-norm fused in (norm_w set: the products are taken against
// x[t] * rsqrt(mean(x[t]^2) + norm_eps) * norm_w; x itself is unchanged).
struct GemvHalfSegment {
  const void* w = nullptr;      // (rows, cols) F16 / BF16, 16-byte aligned
  int64_t rows = 0;
  float* y = nullptr;           // (n_tokens, rows)
  const float* bias = nullptr;  // (rows) nullable
};
struct GemvHalfParams {
  GgmlType type = GgmlType::F16;  // F16 or BF16
  int64_t cols = 0;               // multiple of 8
  const float* x = nullptr;       // (n_tokens, cols), 16-byte aligned
  int64_t n_tokens = 0;           // 1..kGemvHalfMaxTokens
  int n_seg = 1;                  // 1..3 (2 with glu)
  GemvHalfSegment seg[3];
  const float* residual = nullptr;  // (n_tokens, rows): n_seg == 1 only; may alias seg[0].y
  bool glu = false;               // seg[0] = gate, seg[1] = up (same rows)
  GluKind glu_kind = GluKind::SWIGLU;
  const float* norm_w = nullptr;  // (cols) nullable, 16-byte aligned
  float norm_eps = 1e-6f;
};
bool gemv_half_grouped_supports(const GemvHalfParams& p);
void launch_gemv_half_grouped(const GemvHalfParams& p, cudaStream_t stream);

}  // namespace fathom::cuda

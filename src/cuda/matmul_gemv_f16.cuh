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

}  // namespace fathom::cuda

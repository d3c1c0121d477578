// The gated activations' device functions, shared by the elementwise kernels (activation.cu) and
// the GEMV / tensor-core matmul epilogues that fuse gate/up (matmul_gemv_q8.cu,
// matmul_mma_q8_kernel.cuh), so the fused and unfused paths compute the same function.
#pragma once

#include <cuda_runtime.h>

namespace fathom::cuda {

__device__ __forceinline__ float silu_f(float g) { return g / (1.0f + expf(-g)); }
__device__ __forceinline__ float gelu_tanh_f(float g) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
}

}  // namespace fathom::cuda

// Instance file: the bf16 variant of the Q4_K kernels of the tensor-core small-batch matmul
// (matmul_mma_q8_kernel.cuh, stage_q4k_bf), taken at many tokens (matmul_mma_q8.cu, use_bf16).
#include "cuda/matmul_mma_q8_kernel.cuh"

namespace fathom::cuda::mmq {
// nt 2, 4, 8, 16 (the host never plans the variant at nt 1: nt_for(n, true) >= 2).
const void* mmq_kernel_q4_k_bf(int nt, bool rings) {
  switch (nt) {
    case 2: return kernel_bf<2>(rings);
    case 4: return kernel_bf<4>(rings);
    case 8: return kernel_bf<8>(rings);
    default: return kernel_bf<16>(rings);
  }
}
void mmq_launch_q4_k_bf(int nt, bool rings, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) {
  switch (nt) {
    case 2: launch_bf<2>(rings, a, grid, smem, stream); break;
    case 4: launch_bf<4>(rings, a, grid, smem, stream); break;
    case 8: launch_bf<8>(rings, a, grid, smem, stream); break;
    default: launch_bf<16>(rings, a, grid, smem, stream); break;
  }
}
}  // namespace fathom::cuda::mmq

// Instance file: the bf16 variant of the Q4_K kernels of the tensor-core small-batch matmul
// (matmul_mma_q8_kernel.cuh, stage_q4k_bf), taken at many tokens (matmul_mma_q8.cu, use_bf16).
#include "cuda/matmul_mma_q8_kernel.cuh"

namespace fathom::cuda::mmq {
FATHOM_MMQ_BF_INSTANCE(q4_k_bf, Q4_K)
}  // namespace fathom::cuda::mmq

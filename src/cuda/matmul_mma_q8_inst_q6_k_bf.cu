// Instance file: the bf16 variant of the Q6_K kernels of the tensor-core small-batch matmul
// (matmul_mma_q8_kernel.cuh, mma_q8_bf_kernel<Q6_K>, stage_q6k_bf), taken where mma_q8_bf16 says so.
#include "cuda/matmul_mma_q8_kernel.cuh"

namespace fathom::cuda::mmq {
FATHOM_MMQ_BF_INSTANCE(q6_k_bf, Q6_K)
}  // namespace fathom::cuda::mmq

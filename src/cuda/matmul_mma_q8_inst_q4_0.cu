// Instance file (one weight type per file for parallel builds): the Q4_0 kernels of the
// tensor-core small-batch matmul, matmul_mma_q8_kernel.cuh.
#include "cuda/matmul_mma_q8_kernel.cuh"

namespace fathom::cuda::mmq {
FATHOM_MMQ_INSTANCE(q4_0, Q4_0)
}  // namespace fathom::cuda::mmq

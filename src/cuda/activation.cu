// Gated activations, elementwise and memory-bound (read gate + up, write out):
//   SWIGLU: out = silu(g) * u = g / (1 + exp(-g)) * u
//   GEGLU:  out = gelu_tanh(g) * u = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * u
// and the in-place logit soft-cap x = cap * tanh(x / cap).
// Launched with PDL (pdl.cuh): each kernel waits for the previous one first, then lets the next
// one launch.
#include <cuda_runtime.h>

#include "cuda/activation_fn.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {


template <GluKind K>
__global__ void glu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = (K == GluKind::SWIGLU ? silu_f(g) : gelu_tanh_f(g)) * up[i];
  }
}

__global__ void softcap_kernel(float* x, int64_t n, float cap) {
  pdl_wait();
  pdl_trigger();
  const float inv = 1.0f / cap;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = cap * tanhf(x[i] * inv);
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return unsigned(blocks < 4096 ? blocks : 4096);
}

}  // namespace

void launch_glu(const GluParams& p, cudaStream_t stream) {
  const int64_t n = p.n_tokens * p.n;
  if (n <= 0) return;
  // Bytes: gate and up read, out written. Flops per element, exp/tanh counted as one:
  // silu 4 + the product; gelu_tanh 9 + the product.
  const bool swiglu = p.kind == GluKind::SWIGLU;
  launch_cost_hint(12.0 * double(n), (swiglu ? 5.0 : 10.0) * double(n));
  launch_kernel(swiglu ? glu_kernel<GluKind::SWIGLU> : glu_kernel<GluKind::GEGLU>,
                dim3(grid_for(n)), dim3(256), 0, stream, p.gate, p.up, p.out, n);
}

void launch_softcap(const SoftcapParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  FATHOM_CHECK(p.cap > 0.0f, "softcap: cap ", p.cap, " must be positive");
  // Bytes: x read and written; flops: divide (as a multiply), tanh, multiply.
  launch_cost_hint(8.0 * double(p.n), 3.0 * double(p.n));
  launch_kernel(softcap_kernel, dim3(grid_for(p.n)), dim3(256), 0, stream, p.x, p.n, p.cap);
}

}  // namespace fathom::cuda

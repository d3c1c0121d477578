// RMS norm with an optional fused residual add (one read of x and residual, one write of x and
// out): x[r] += residual[r]; out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w.
// One block of 256 threads per row; the row is read twice (the second time from L1/L2).
// Launched with PDL (pdl.cuh): waits for the previous kernel first, then lets the next one launch.
#include <cuda_runtime.h>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads) rms_norm_kernel(const __grid_constant__ RmsNormParams p) {
  __shared__ float warp_sums[kNormThreads / 32];
  __shared__ float inv_rms;
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  float* x = p.x + r * p.n;
  const float* res = p.residual ? p.residual + r * p.n : nullptr;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) {
    float v = x[i];
    if (res) {
      v += res[i];
      x[i] = v;
    }
    ss = fmaf(v, v, ss);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < kNormThreads / 32; ++w) t += warp_sums[w];
    inv_rms = rsqrtf(t / float(p.n) + p.eps);
  }
  __syncthreads();
  const float s = inv_rms;
  float* out = p.out + r * p.n;
  // Each thread re-reads the elements it wrote itself above, so no barrier is needed for x.
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) {
    const float w = p.w ? p.w[i] : 1.0f;
    out[i] = x[i] * s * w;
  }
}

}  // namespace

void launch_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.n_rows <= 0) return;
  FATHOM_CHECK(p.n > 0 && p.n_rows < (int64_t(1) << 31), "rms_norm: bad shape (", p.n_rows, ", ",
               p.n, ")");
  // Bytes: x read (+ residual read and x written back), out written, w once.
  // Flops: square-accumulate, scale and weight per element (+ the residual add).
  const double elems = double(p.n_rows) * double(p.n);
  const bool res = p.residual != nullptr;
  launch_cost_hint(4.0 * elems * (res ? 4.0 : 2.0) + (p.w ? 4.0 * double(p.n) : 0.0),
                   elems * (res ? 4.0 : 3.0));
  launch_kernel(rms_norm_kernel, dim3(unsigned(p.n_rows)), dim3(kNormThreads), 0, stream, p);
}

}  // namespace fathom::cuda

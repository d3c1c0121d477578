// RMS norm with an optional fused residual add (one read of x and residual, one write of x and
// out): x[r] += residual[r]; out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w.
//
// Vector kernel (n % 4 == 0, 16-byte aligned rows, n <= 16384; every shape the engine runs): a
// row is held in registers, V float4 per thread, by a group of TPR threads -- one warp per row
// for n <= 512 (per-head q/k norms: 8 rows per 256-thread block), the whole 256-thread block
// above (model-width norms). All V loads of a thread are issued before the first use (one memory
// round trip instead of one per element), the row is read once, the weights are loaded before
// pdl_wait() (no kernel of a step writes them), and the reduction is a warp shuffle (+ one
// shared-memory step across the block's 8 warps). At batch 1 a 4096-wide norm is one block: 16 KB
// in and 16 KB out is latency, not bandwidth; the old kernel below spent it in dependent loads
// (a runtime-trip loop over possibly aliasing x / out: one L2 round trip per element per thread,
// 2 x 16 of them at n 4096).
//
// Scalar kernel (any other n or alignment): one block of 256 threads per row, the row read twice
// (the second time from L1/L2). Both are launched with PDL (pdl.cuh).
#include <cuda_runtime.h>

#include <cstdint>

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

// TPR threads per row (32 or kNormThreads), V float4 per thread: rows of up to 4 * TPR * V floats.
template <int TPR, int V>
__global__ void __launch_bounds__(kNormThreads) rms_norm_vec_kernel(const __grid_constant__ RmsNormParams p) {
  static_assert(TPR == 32 || TPR == kNormThreads, "a row is one warp or the whole block");
  constexpr int kRowsPerBlock = kNormThreads / TPR;
  __shared__ float warp_sums[kNormThreads / 32];
  const int lt = int(threadIdx.x) % TPR;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / TPR;
  const int n4 = int(p.n / 4);

  // Weights first: no kernel of the step writes them, so they may load before the wait.
  float4 w[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int i = lt + v * TPR;
    w[v] = (p.w && i < n4) ? __ldg(reinterpret_cast<const float4*>(p.w) + i) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
  }
  pdl_wait();
  pdl_trigger();
  const bool row_ok = r < p.n_rows;  // only the warp-per-row kernel has rows past the end
  float4* x = reinterpret_cast<float4*>(p.x + r * p.n);
  const float4* res = p.residual ? reinterpret_cast<const float4*>(p.residual + r * p.n) : nullptr;
  float4 xv[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int i = lt + v * TPR;
    xv[v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row_ok && i < n4) xv[v] = x[i];
  }
  if (res) {
    float4 rv[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int i = lt + v * TPR;
      rv[v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (row_ok && i < n4) rv[v] = res[i];
    }
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int i = lt + v * TPR;
      xv[v].x += rv[v].x;
      xv[v].y += rv[v].y;
      xv[v].z += rv[v].z;
      xv[v].w += rv[v].w;
      if (row_ok && i < n4) x[i] = xv[v];
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    ss = fmaf(xv[v].x, xv[v].x, ss);
    ss = fmaf(xv[v].y, xv[v].y, ss);
    ss = fmaf(xv[v].z, xv[v].z, ss);
    ss = fmaf(xv[v].w, xv[v].w, ss);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if constexpr (TPR > 32) {
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kNormThreads / 32; ++k) ss += warp_sums[k];
  }
  if (!row_ok) return;
  const float s = rsqrtf(ss / float(p.n) + p.eps);
  float4* out = reinterpret_cast<float4*>(p.out + r * p.n);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int i = lt + v * TPR;
    if (i < n4)
      out[i] = make_float4(xv[v].x * s * w[v].x, xv[v].y * s * w[v].y, xv[v].z * s * w[v].z,
                           xv[v].w * s * w[v].w);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

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
  const bool vec = p.n % 4 == 0 && p.n <= 4 * kNormThreads * 16 && aligned16(p.x) &&
                   aligned16(p.out) && (!p.w || aligned16(p.w)) && (!res || aligned16(p.residual));
  if (!vec) {
    launch_kernel(rms_norm_kernel, dim3(unsigned(p.n_rows)), dim3(kNormThreads), 0, stream, p);
    return;
  }
  const int64_t n4 = p.n / 4;
  if (n4 <= 32 * 4) {  // one warp per row, 8 rows per block
    const dim3 grid(unsigned((p.n_rows + kNormThreads / 32 - 1) / (kNormThreads / 32)));
    if (n4 <= 32) launch_kernel(rms_norm_vec_kernel<32, 1>, grid, dim3(kNormThreads), 0, stream, p);
    else if (n4 <= 64) launch_kernel(rms_norm_vec_kernel<32, 2>, grid, dim3(kNormThreads), 0, stream, p);
    else launch_kernel(rms_norm_vec_kernel<32, 4>, grid, dim3(kNormThreads), 0, stream, p);
    return;
  }
  const dim3 grid(unsigned(p.n_rows));
  constexpr int T = kNormThreads;
  if (n4 <= T) launch_kernel(rms_norm_vec_kernel<T, 1>, grid, dim3(T), 0, stream, p);
  else if (n4 <= 2 * T) launch_kernel(rms_norm_vec_kernel<T, 2>, grid, dim3(T), 0, stream, p);
  else if (n4 <= 4 * T) launch_kernel(rms_norm_vec_kernel<T, 4>, grid, dim3(T), 0, stream, p);
  else if (n4 <= 8 * T) launch_kernel(rms_norm_vec_kernel<T, 8>, grid, dim3(T), 0, stream, p);
  else launch_kernel(rms_norm_vec_kernel<T, 16>, grid, dim3(T), 0, stream, p);
}

}  // namespace fathom::cuda

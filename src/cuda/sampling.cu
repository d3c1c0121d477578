// Token selection on the GPU; only the chosen token id leaves the device.
//
// Greedy (launch_argmax): pass 1, grid (n_rows, kArgmaxBlocks): each block reduces a slice of the
// row to (max, lowest index of max); pass 2, one block per row reduces the partials. The order
// "larger value, then lower index" makes the result identical to fathom::sampling::argmax.
//
// Stochastic (launch_sample): one block of 1024 threads per row, the stages of
// include/fathom/sampler.h without any sort:
//   key(x)     order-preserving uint32 of a float logit (bigger float -> bigger key);
//   top-k      radix select (4 passes of 8 bits, shared-memory histograms) finds the k-th largest
//              key Tk; kept set = {key >= Tk} (ties at Tk are all kept, the CPU keeps lower ids);
//   softmax    p_i = exp((l_i - l_max) / temp) over the kept set, Z = sum;
//   top-p      radix select on probability mass: the largest key Tp with sum_{key >= Tp} p >=
//              top_p * Z (the shortest sorted prefix reaching top_p, ties included);
//   min-p      keep p_i >= min_p (p_max = 1 before normalisation);
//   draw       u from the per-row counter-based RNG; r = u * (kept mass); walk the kept tokens
//              in id order (block prefix sum over per-thread contiguous chunks).
// The kept set equals the CPU's up to ties and float summation order; the draw is the same
// distribution with a different token-to-u mapping, so only greedy is token-exact.
//
// Every kernel is launched with PDL (pdl.cuh): it waits for the previous kernel first (the
// logits), then lets the next one launch.
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {

constexpr int kArgmaxThreads = 256;
constexpr int kArgmaxBlocks = 64;  // slices per row in pass 1
constexpr int kSampleThreads = 1024;

struct ArgPair {
  float v;
  int32_t i;
};

__device__ __forceinline__ ArgPair better_of(ArgPair a, ArgPair b) {
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

__device__ ArgPair block_argmax(ArgPair x) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ArgPair o{__shfl_xor_sync(0xffffffffu, x.v, off), __shfl_xor_sync(0xffffffffu, x.i, off)};
    x = better_of(x, o);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  __syncthreads();  // sv/si may still be read by a previous call
  if (lane == 0) {
    sv[warp] = x.v;
    si[warp] = x.i;
  }
  __syncthreads();
  x = lane < n_warps ? ArgPair{sv[lane], si[lane]} : ArgPair{-INFINITY, INT_MAX};
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ArgPair o{__shfl_xor_sync(0xffffffffu, x.v, off), __shfl_xor_sync(0xffffffffu, x.i, off)};
    x = better_of(x, o);
  }
  return x;  // valid in every thread
}

__global__ void argmax_pass1_kernel(const float* logits, int64_t n_vocab, ArgPair* partial) {
  pdl_wait();
  pdl_trigger();
  const int64_t row = blockIdx.x;
  const float* l = logits + row * n_vocab;
  const int64_t per = (n_vocab + gridDim.y - 1) / gridDim.y;
  const int64_t begin = int64_t(blockIdx.y) * per, end = min(n_vocab, begin + per);
  ArgPair best{-INFINITY, INT_MAX};
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    best = better_of(best, ArgPair{l[i], int32_t(i)});
  best = block_argmax(best);
  if (threadIdx.x == 0) partial[row * gridDim.y + blockIdx.y] = best;
}

__global__ void argmax_pass2_kernel(const ArgPair* partial, int n_parts, int32_t* out) {
  pdl_wait();
  pdl_trigger();
  const int64_t row = blockIdx.x;
  ArgPair best{-INFINITY, INT_MAX};
  for (int i = threadIdx.x; i < n_parts; i += blockDim.x) best = better_of(best, partial[row * n_parts + i]);
  best = block_argmax(best);
  if (threadIdx.x == 0) out[row] = best.i == INT_MAX ? 0 : best.i;
}

__device__ __forceinline__ uint32_t float_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <typename T>
__device__ T block_sum(T x, T* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < int(blockDim.x >> 5) ? scratch[lane] : T(0);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(const __grid_constant__ SampleParams p) {
  __shared__ uint32_t hist_u[256];
  __shared__ float hist_f[256];
  __shared__ float scratch_f[32];
  __shared__ uint32_t sel_prefix, sel_remaining_u;
  __shared__ float sel_above;
  __shared__ int32_t result;
  __shared__ float chunk_scan[kSampleThreads];
  pdl_wait();
  pdl_trigger();

  const int64_t row = blockIdx.x;
  const float* l = p.logits + row * p.n_vocab;
  const int64_t n = p.n_vocab;
  const int tid = threadIdx.x;

  // Max logit (and greedy when temp <= 0).
  ArgPair best{-INFINITY, INT_MAX};
  for (int64_t i = tid; i < n; i += blockDim.x) best = better_of(best, ArgPair{l[i], int32_t(i)});
  best = block_argmax(best);
  if (p.temp <= 0.0f) {
    if (tid == 0) p.out_tokens[row] = best.i == INT_MAX ? 0 : best.i;
    return;
  }
  const float l_max = best.v;

  // top-k: radix select of the k-th largest key.
  uint32_t tk = 0;  // keep key >= tk
  if (p.top_k > 0 && p.top_k < n) {
    uint32_t prefix = 0;
    uint32_t remaining = uint32_t(p.top_k);
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += blockDim.x) hist_u[b] = 0;
      __syncthreads();
      const uint32_t hi_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
      for (int64_t i = tid; i < n; i += blockDim.x) {
        const uint32_t k = float_key(l[i]);
        if ((k & hi_mask) == (prefix & hi_mask)) atomicAdd(&hist_u[(k >> shift) & 0xFF], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        uint32_t cum = 0;
        int b = 255;
        for (; b > 0; --b) {
          if (cum + hist_u[b] >= remaining) break;
          cum += hist_u[b];
        }
        sel_prefix = prefix | (uint32_t(b) << shift);
        sel_remaining_u = remaining - cum;
      }
      __syncthreads();
      prefix = sel_prefix;
      remaining = sel_remaining_u;
    }
    tk = prefix;
  }

  // Softmax mass over the kept set.
  const float inv_temp = 1.0f / p.temp;
  float z = 0.0f;
  for (int64_t i = tid; i < n; i += blockDim.x) {
    const float x = l[i];
    if (float_key(x) >= tk) z += expf((x - l_max) * inv_temp);
  }
  z = block_sum(z, scratch_f);

  // top-p: largest key tp with mass(key >= tp) >= top_p * z.
  uint32_t tp = 0;
  if (p.top_p < 1.0f) {
    const float target = p.top_p * z;
    uint32_t prefix = 0;
    float above = 0.0f;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += blockDim.x) hist_f[b] = 0.0f;
      __syncthreads();
      const uint32_t hi_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
      for (int64_t i = tid; i < n; i += blockDim.x) {
        const float x = l[i];
        const uint32_t k = float_key(x);
        if (k >= tk && (k & hi_mask) == (prefix & hi_mask))
          atomicAdd(&hist_f[(k >> shift) & 0xFF], expf((x - l_max) * inv_temp));
      }
      __syncthreads();
      if (tid == 0) {
        float cum = above;
        int b = 255;
        for (; b > 0; --b) {
          if (cum + hist_f[b] >= target) break;
          cum += hist_f[b];
        }
        sel_prefix = prefix | (uint32_t(b) << shift);
        sel_above = cum;
      }
      __syncthreads();
      prefix = sel_prefix;
      above = sel_above;
    }
    tp = prefix;
  }
  const uint32_t t_keep = max(tk, tp);
  const float p_min = p.min_p > 0.0f ? p.min_p : 0.0f;

  // Draw: contiguous chunk per thread, block prefix sum of the kept mass.
  const int64_t chunk = (n + blockDim.x - 1) / blockDim.x;
  const int64_t c0 = min(n, int64_t(tid) * chunk), c1 = min(n, c0 + chunk);
  float mine = 0.0f;
  int32_t last_kept = -1;
  for (int64_t i = c0; i < c1; ++i) {
    const float x = l[i];
    const float pi = expf((x - l_max) * inv_temp);
    if (float_key(x) >= t_keep && pi >= p_min) {
      mine += pi;
      last_kept = int32_t(i);
    }
  }
  chunk_scan[tid] = mine;
  if (tid == 0) result = INT_MAX;
  __syncthreads();
  // Inclusive scan (Hillis-Steele; 10 steps for 1024 threads).
  for (int off = 1; off < int(blockDim.x); off <<= 1) {
    const float add = tid >= off ? chunk_scan[tid - off] : 0.0f;
    __syncthreads();
    chunk_scan[tid] += add;
    __syncthreads();
  }
  const float total = chunk_scan[blockDim.x - 1];
  const uint64_t counter = p.rng_counter ? p.rng_counter[row] : 0;
  const uint64_t bits = splitmix64(p.seed ^ splitmix64(counter * 0x9E3779B97F4A7C15ull + uint64_t(row)));
  const float u = float(bits >> 40) * (1.0f / 16777216.0f);
  const float r = u * total;
  const float excl = chunk_scan[tid] - mine;
  if (mine > 0.0f && r >= excl && r < excl + mine) {
    float cum = excl;
    int32_t pick = last_kept;
    for (int64_t i = c0; i < c1; ++i) {
      const float x = l[i];
      const float pi = expf((x - l_max) * inv_temp);
      if (float_key(x) >= t_keep && pi >= p_min) {
        cum += pi;
        if (cum > r) {
          pick = int32_t(i);
          break;
        }
      }
    }
    atomicMin(&result, pick);
  }
  __syncthreads();
  if (result == INT_MAX) {
    // r fell past the last chunk through rounding: take the last kept token overall.
    __shared__ int32_t last_any;
    if (tid == 0) last_any = -1;
    __syncthreads();
    if (last_kept >= 0) atomicMax(&last_any, last_kept);
    __syncthreads();
    if (tid == 0) result = last_any >= 0 ? last_any : best.i;
    __syncthreads();
  }
  if (tid == 0) {
    p.out_tokens[row] = result;
    if (p.rng_counter) p.rng_counter[row] = counter + 1;
  }
}

}  // namespace

size_t argmax_workspace_bytes(int64_t n_rows, int64_t n_vocab) {
  return size_t(n_rows) * kArgmaxBlocks * sizeof(ArgPair);
}

void launch_argmax(const ArgmaxParams& p, cudaStream_t stream) {
  if (p.n_rows <= 0) return;
  FATHOM_CHECK(p.n_vocab > 0 && p.n_vocab < INT_MAX, "argmax: bad n_vocab ", p.n_vocab);
  FATHOM_CHECK(p.workspace != nullptr, "argmax: workspace is required");
  ArgPair* partial = static_cast<ArgPair*>(p.workspace);
  // Pass 1 reads the logits once (one compare per element) and writes the partials; pass 2
  // reads the partials and writes one id per row.
  const double rows = double(p.n_rows), parts = rows * kArgmaxBlocks * sizeof(ArgPair);
  launch_cost_hint(rows * double(p.n_vocab) * 4.0 + parts, rows * double(p.n_vocab));
  launch_kernel(argmax_pass1_kernel, dim3(unsigned(p.n_rows), kArgmaxBlocks), dim3(kArgmaxThreads),
                0, stream, p.logits, p.n_vocab, partial);
  launch_cost_hint(parts + rows * 4.0, rows * kArgmaxBlocks);
  launch_kernel(argmax_pass2_kernel, dim3(unsigned(p.n_rows)), dim3(64), 0, stream,
                static_cast<const ArgPair*>(partial), int(kArgmaxBlocks), p.out_tokens);
}

void launch_sample(const SampleParams& p, cudaStream_t stream) {
  if (p.n_rows <= 0) return;
  FATHOM_CHECK(p.n_vocab > 0 && p.n_vocab < INT_MAX, "sample: bad n_vocab ", p.n_vocab);
  // DRAM: each row's logits once (the later passes re-read them from L2: 4 * n_vocab bytes,
  // ~600 KB at 152k vocab), the id and the RNG counter. Passes over the row: max, softmax mass,
  // draw, 4 for top-k and 4 for top-p when on (the one chunk the draw walks again is
  // negligible); ~3 flops per element per pass (exp counted as one).
  const bool greedy = p.temp <= 0.0f;
  const double passes = greedy ? 1.0
                               : 3.0 + (p.top_k > 0 && p.top_k < p.n_vocab ? 4.0 : 0.0) +
                                     (p.top_p < 1.0f ? 4.0 : 0.0);
  launch_cost_hint(double(p.n_rows) * (double(p.n_vocab) * 4.0 + 4.0 + (p.rng_counter ? 16.0 : 0.0)),
                   double(p.n_rows) * double(p.n_vocab) * 3.0 * passes);
  launch_kernel(sample_kernel, dim3(unsigned(p.n_rows)), dim3(kSampleThreads), 0, stream, p);
}

}  // namespace fathom::cuda

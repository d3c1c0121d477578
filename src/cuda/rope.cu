// RoPE on q and k, fused with the store of k and v into the paged KV cache (layout: ops.cuh).
// Per token: theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i] for the n_rot/2
// rotated pairs, computed in double (like the CPU twin) and reduced to float cos/sin in shared
// memory (rope_math.cuh, shared with the decode attention, which does this kernel's work itself
// for decode steps: AttentionParams::rope). NORM rotates pairs (2i, 2i+1), NEOX pairs
// (i, i + n_rot/2); dims >= n_rot pass through. Bytes: q and k read+written once, v read once,
// k/v written as fp16.
//
// Grid (n_tokens, ceil((n_head + n_head_kv) / 4)), 4 warps per block, one warp per (token, head):
// q heads first, then kv heads; a kv-head warp also stores its k row and copies its v row into
// the cache. The block's threads fill the cos/sin table of its token first -- BEFORE pdl_wait():
// pos, slot_mapping and freq_factors are written by no kernel of the step (a host copy before the
// step's first kernel, and the weights), so the double-precision sincos overlaps the previous
// kernel's tail. A lane loads all its pairs (and v elements) before it stores any. At batch 1
// (llama3-8b: 32 + 8 heads) that is 10 blocks; the kernel before it (one block of 256 threads per
// token) walked 2560 pairs in 10 dependent rounds of loads and stores through possibly aliasing
// pointers (docs/perf/small_decode_kernels.md has the A/B). Launched with PDL (pdl.cuh).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"
#include "cuda/rope_math.cuh"

namespace fathom::cuda {
namespace {

constexpr int kMaxHeadDim = 512;
constexpr int kRopeHeadWarps = 4;
constexpr int kRopeMaxPairsPerLane = kMaxHeadDim / 2 / 32;  // 8
constexpr int kRopeMaxVPerLane = kMaxHeadDim / 32;          // 16

// cos/sin of the n_rot / 2 rotation angles of position pos, shared by the block.
__device__ __forceinline__ void rope_table(const RopeKvParams& p, int64_t t, float* cos_t, float* sin_t) {
  const double pos = double(p.pos[t]);
  for (int i = threadIdx.x; i < p.n_rot / 2; i += blockDim.x) rope_cos_sin(p, pos, i, cos_t[i], sin_t[i]);
}

__global__ void __launch_bounds__(kRopeHeadWarps * 32) rope_kv_kernel(const __grid_constant__ RopeKvParams p) {
  __shared__ float cos_t[kMaxHeadDim / 2], sin_t[kMaxHeadDim / 2];
  const int64_t t = blockIdx.x;
  // pos, slot_mapping and freq_factors: written by no kernel of the step (see the header).
  rope_table(p, t, cos_t, sin_t);
  const int64_t slot = (p.k_cache && p.slot_mapping) ? p.slot_mapping[t] : -1;
  pdl_wait();
  pdl_trigger();
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n_q = p.q ? p.n_head : 0;
  const int hidx = blockIdx.y * kRopeHeadWarps + warp;
  if (hidx >= n_q + p.n_head_kv) return;  // warp-uniform; no barrier follows
  const bool is_q = hidx < n_q;
  const int head = is_q ? hidx : hidx - n_q;
  const int hd = p.head_dim, pairs = hd / 2, half_rot = p.n_rot / 2;
  float* h = is_q ? p.q + (t * p.n_head + head) * hd : p.k + (t * p.n_head_kv + head) * hd;

  // Pair j of this lane: i = lane + 32 j, elements (a, b) and its angle (or none past n_rot).
  int ia[kRopeMaxPairsPerLane], ib[kRopeMaxPairsPerLane];
  float xa[kRopeMaxPairsPerLane], xb[kRopeMaxPairsPerLane];
#pragma unroll
  for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
    const int i = lane + 32 * j;
    int a, b;
    if (p.type == RopeType::NORM) {
      a = 2 * i;
      b = a + 1;
    } else if (i < half_rot) {
      a = i;
      b = i + half_rot;
    } else {
      a = p.n_rot + 2 * (i - half_rot);
      b = a + 1;
    }
    ia[j] = a;
    ib[j] = b;
    xa[j] = xb[j] = 0.0f;
    if (i < pairs) {
      xa[j] = h[a];
      xb[j] = h[b];
    }
  }
  const bool kv_write = !is_q && slot >= 0;
  const int64_t blk = slot >= 0 ? slot / p.block_size : 0, off = slot >= 0 ? slot % p.block_size : 0;
  const int64_t crow = ((blk * p.n_head_kv + head) * p.block_size + off) * hd;
  float vv[kRopeMaxVPerLane];
  const bool v_write = kv_write && p.v && p.v_cache;
  if (v_write) {
    const float* vrow = p.v + (t * p.n_head_kv + head) * hd;
#pragma unroll
    for (int j = 0; j < kRopeMaxVPerLane; ++j) {
      const int d = lane + 32 * j;
      vv[j] = d < hd ? __ldg(vrow + d) : 0.0f;
    }
  }
#pragma unroll
  for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i >= pairs) continue;
    float x0 = xa[j], x1 = xb[j];
    if (i < half_rot) {  // NORM: pair i is dims (2i, 2i + 1) < n_rot; NEOX: (i, i + n_rot / 2)
      const float c = cos_t[i], s = sin_t[i];
      const float y0 = rope_first(x0, x1, c, s);
      const float y1 = rope_second(x0, x1, c, s);
      x0 = y0;
      x1 = y1;
      h[ia[j]] = x0;
      h[ib[j]] = x1;
    }
    if (kv_write) {
      __half* kc = static_cast<__half*>(p.k_cache) + crow;
      kc[ia[j]] = __float2half_rn(x0);
      kc[ib[j]] = __float2half_rn(x1);
    }
  }
  if (v_write) {
    __half* vc = static_cast<__half*>(p.v_cache) + crow;
#pragma unroll
    for (int j = 0; j < kRopeMaxVPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < hd) vc[d] = __float2half_rn(vv[j]);
    }
  }
}

}  // namespace

size_t kv_type_bytes(KvType t) {
  switch (t) {
    case KvType::F16:
    case KvType::BF16:
      return 2;
    case KvType::FP8_E4M3:
    case KvType::INT8:
      return 1;
  }
  fail("kv_type_bytes: unknown KvType ", int(t));
}

void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream) {
  if (p.n_tokens <= 0) return;
  FATHOM_CHECK(p.head_dim > 0 && p.head_dim % 2 == 0 && p.head_dim <= kMaxHeadDim,
               "rope: head_dim ", p.head_dim, " must be even and at most ", kMaxHeadDim);
  FATHOM_CHECK(p.n_rot > 0 && p.n_rot % 2 == 0 && p.n_rot <= p.head_dim, "rope: n_rot ", p.n_rot,
               " must be even, positive and at most head_dim ", p.head_dim);
  FATHOM_CHECK(p.k != nullptr, "rope: k is required");
  FATHOM_CHECK(p.k_cache == nullptr || p.kv_type == KvType::F16, "rope: KV cache type ",
               int(p.kv_type), " is not implemented (only F16)");
  FATHOM_CHECK(p.n_tokens < (int64_t(1) << 31), "rope: too many tokens ", p.n_tokens);
  // Bytes per token: q and k read + written (fp32), v read, k and v stored (fp16), pos and slot.
  // Flops: 6 per rotated pair (4 mul, 2 add) over every q and k head; theta is per token, small.
  const double hd = double(p.head_dim), nq = p.q ? double(p.n_head) : 0.0,
               nkv = double(p.n_head_kv);
  const bool cache = p.k_cache != nullptr;
  const double per_tok = 8.0 * hd * (nq + nkv) + (p.v ? 4.0 * hd * nkv : 0.0) +
                         (cache ? 2.0 * hd * nkv * (p.v && p.v_cache ? 2.0 : 1.0) + 4.0 : 0.0) + 4.0;
  launch_cost_hint(double(p.n_tokens) * per_tok,
                   double(p.n_tokens) * (nq + nkv) * double(p.n_rot / 2) * 6.0);
  const int heads = (p.q ? p.n_head : 0) + p.n_head_kv;
  const dim3 grid(unsigned(p.n_tokens), unsigned((heads + kRopeHeadWarps - 1) / kRopeHeadWarps));
  launch_kernel(rope_kv_kernel, grid, dim3(kRopeHeadWarps * 32), 0, stream, p);
}

}  // namespace fathom::cuda

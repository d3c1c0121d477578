// Attention over the paged fp16 KV cache (layout and masking rules: ops.cuh).
//   out[t,h] = sum_j softmax_j(mask(softcap(scale * q[t,h] . k[j,h/g]))) v[j,h/g]
// Softmax is online (running max m, running sum l, rescaled accumulator) in fp32; scores never
// reach global memory.
//
// Decode (max_q_len == 1): the split kernel of attention_decode.cu (K/V streamed through shared
// memory by cp.async, both products on tensor cores, splits cut on the device from the real
// kv_len, and its merge kernel; its header says how). The older fp32 decode kernel and its split
// reduce that lived here were deleted once the split kernel had passed memcheck/racecheck.
//
// Prefill (max_q_len > 1): the tensor-core kernel of attention_prefill.cu (mma.sync m16n8k16,
// 128 query rows of one head per block, 64 at D 64; its header says how). FATHOM_ATTN_PREFILL=
// w4 / b2 / w8 take its other variants, =scalar the older fp32 kernel below (A/B, reference).
//
// Scalar prefill (FATHOM_ATTN_PREFILL=scalar), flash-style tiles: a block takes 16 (query token, head) rows that
// share one kv head (16/g tokens x g heads), and walks the visible keys in tiles of 32 tokens
// staged in shared memory as fp16. A warp owns 4 rows; lane j scores key j of the tile against
// each row, the warp does the online softmax, then each lane accumulates D/32 output dims.
// K/V come from the paged cache (the current chunk was written by launch_rope_kv first), so
// chunked prefill needs no second code path.
//
// Every kernel here is launched with PDL (pdl.cuh): it waits for the previous kernel first
// (q, the cache and kv_len are all written by earlier kernels or copies), then lets the next one
// launch.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "cuda/attention_decode.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {

// attention_prefill.cu
void launch_attention_prefill_tc(const AttentionParams& p, float scale, int variant, double bytes,
                                 double flops, cudaStream_t stream);

namespace {

constexpr int kPrefillRows = 16;      // (token, head) rows per block
constexpr int kPrefillRowsPerWarp = 4;
constexpr int kPrefillKeys = 32;      // keys per tile
constexpr float kLog2e = 1.4426950408889634f;

struct AttnArgs {
  AttentionParams p;
  int32_t n_head_groups;   // query-head groups per kv head
  int32_t heads_per_group;
  float scale;
};

__device__ __forceinline__ float apply_softcap(float s, float cap) {
  return cap > 0.0f ? cap * tanhf(s / cap) : s;
}

// Visible key range [lo, hi) for a query at position qp of a sequence with kvl cached tokens.
__device__ __forceinline__ void visible_range(const AttentionParams& p, int qp, int kvl, int& lo,
                                              int& hi) {
  hi = p.causal ? min(kvl, qp + 1) : kvl;
  lo = p.sliding_window > 0 ? max(0, qp - p.sliding_window + 1) : 0;
}

__device__ __forceinline__ const __half* kv_row(const void* cache, const AttentionParams& p,
                                                const int32_t* bt, int j, int kvh, int D) {
  const int64_t phys = bt[j / p.block_size];
  return static_cast<const __half*>(cache) +
         ((phys * p.n_head_kv + kvh) * p.block_size + (j % p.block_size)) * int64_t(D);
}

__device__ __forceinline__ void load8(const __half* src, float f[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(src);
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// ---- prefill -----------------------------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(128) attention_prefill_kernel(const __grid_constant__ AttnArgs a) {
  constexpr int KP = D + 8;        // padded fp16 row of the K tile: conflict-free 16-byte reads
  constexpr int DPL = D / 32;      // output dims per lane
  extern __shared__ float4 prefill_smem4[];
  float* qs = reinterpret_cast<float*>(prefill_smem4);                    // [16][D]
  __half* ks = reinterpret_cast<__half*>(qs + kPrefillRows * D);          // [32][KP]
  __half* vs = ks + kPrefillKeys * KP;                                    // [32][D]
  __shared__ int row_tok[kPrefillRows], row_head[kPrefillRows], row_lo[kPrefillRows],
      row_hi[kPrefillRows];
  __shared__ int tile_lo, tile_hi;
  pdl_wait();
  pdl_trigger();

  const AttentionParams& p = a.p;
  const int seq = blockIdx.y;
  const int kvh = blockIdx.z / a.n_head_groups;
  const int hgroup = blockIdx.z % a.n_head_groups;
  const int g = p.n_head / p.n_head_kv;
  const int hpg = a.heads_per_group;
  const int nh = min(hpg, g - hgroup * hpg);
  const int tok_per_block = kPrefillRows / hpg;
  const int q_begin = p.q_seq_start[seq], q_end = p.q_seq_start[seq + 1];
  const int t0 = q_begin + blockIdx.x * tok_per_block;
  if (t0 >= q_end) return;  // block-uniform
  const int kvl = p.kv_len[seq];
  const int32_t* bt = p.block_table + int64_t(seq) * p.max_blocks_per_seq;

  if (threadIdx.x < kPrefillRows) {
    const int r = threadIdx.x;
    const int t = t0 + r / hpg, hh = r % hpg;
    int lo = 0, hi = 0, head = -1;
    if (r / hpg < tok_per_block && t < q_end && hh < nh) {
      head = kvh * g + hgroup * hpg + hh;
      visible_range(p, p.q_pos[t], kvl, lo, hi);
    }
    row_tok[r] = t;
    row_head[r] = head;
    row_lo[r] = lo;
    row_hi[r] = head >= 0 ? hi : 0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int lo = INT_MAX, hi = 0;
    for (int r = 0; r < kPrefillRows; ++r)
      if (row_head[r] >= 0 && row_hi[r] > row_lo[r]) {
        lo = min(lo, row_lo[r]);
        hi = max(hi, row_hi[r]);
      }
    tile_lo = lo == INT_MAX ? 0 : lo;
    tile_hi = hi;
  }
  for (int i = threadIdx.x; i < kPrefillRows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    qs[i] = row_head[r] >= 0 ? p.q[(int64_t(row_tok[r]) * p.n_head + row_head[r]) * D + d] * a.scale
                             : 0.0f;
  }
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float m[kPrefillRowsPerWarp], l[kPrefillRowsPerWarp], acc[kPrefillRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < DPL; ++e) acc[r][e] = 0.0f;
  }
  const int lo_all = tile_lo, hi_all = tile_hi;

  for (int j0 = lo_all; j0 < hi_all; j0 += kPrefillKeys) {
    // Stage K and V of keys j0 .. j0+31 (zeros past hi_all).
    for (int c = threadIdx.x; c < kPrefillKeys * (D / 8); c += blockDim.x) {
      const int jj = c / (D / 8), d8 = (c % (D / 8)) * 8;
      const int j = j0 + jj;
      uint4 kraw = make_uint4(0, 0, 0, 0), vraw = make_uint4(0, 0, 0, 0);
      if (j < hi_all) {
        kraw = *reinterpret_cast<const uint4*>(kv_row(p.k_cache, p, bt, j, kvh, D) + d8);
        vraw = *reinterpret_cast<const uint4*>(kv_row(p.v_cache, p, bt, j, kvh, D) + d8);
      }
      *reinterpret_cast<uint4*>(ks + jj * KP + d8) = kraw;
      *reinterpret_cast<uint4*>(vs + jj * D + d8) = vraw;
    }
    __syncthreads();

    // Scores: lane = key.
    float s[kPrefillRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kPrefillRowsPerWarp; ++r) s[r] = 0.0f;
    for (int d = 0; d < D; d += 8) {
      float kf[8];
      load8(ks + lane * KP + d, kf);
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float* qr = qs + (warp * kPrefillRowsPerWarp + r) * D + d;
        const float4 qa = *reinterpret_cast<const float4*>(qr);
        const float4 qb = *reinterpret_cast<const float4*>(qr + 4);
        s[r] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] +
                qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
      }
    }
    const int j = j0 + lane;
#pragma unroll
    for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
      const int row = warp * kPrefillRowsPerWarp + r;
      const bool vis = row_head[row] >= 0 && j >= row_lo[row] && j < row_hi[row];
      const float sc = vis ? apply_softcap(s[r], p.softcap) * kLog2e : -INFINITY;
      float tmax = sc;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
      const float m_new = fmaxf(m[r], tmax);
      float pj = 0.0f, corr = 1.0f;
      if (m_new != -INFINITY) {
        pj = vis ? exp2f(sc - m_new) : 0.0f;
        corr = exp2f(m[r] - m_new);
      }
      float psum = pj;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
      l[r] = l[r] * corr + psum;
      m[r] = m_new;
#pragma unroll
      for (int e = 0; e < DPL; ++e) acc[r][e] *= corr;
      s[r] = pj;
    }
    // P @ V: every lane needs every p_j of its rows; V rows are read contiguously by the warp.
    for (int jj = 0; jj < kPrefillKeys; ++jj) {
      float vf[DPL];
      const __half* vr = vs + jj * D + lane * DPL;
#pragma unroll
      for (int e = 0; e < DPL; ++e) vf[e] = __half2float(vr[e]);
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float pj = __shfl_sync(0xffffffffu, s[r], jj);
#pragma unroll
        for (int e = 0; e < DPL; ++e) acc[r][e] = fmaf(pj, vf[e], acc[r][e]);
      }
    }
    __syncthreads();  // the tile is no longer read
  }

#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    const int row = warp * kPrefillRowsPerWarp + r;
    if (row_head[row] < 0) continue;
    float* o = p.out + (int64_t(row_tok[row]) * p.n_head + row_head[row]) * D + lane * DPL;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
    for (int e = 0; e < DPL; ++e) o[e] = acc[r][e] * inv;
  }
}

void check_params(const AttentionParams& p) {
  FATHOM_CHECK(p.head_dim == 64 || p.head_dim == 128 || p.head_dim == 256, "attention: head_dim ",
               p.head_dim, " is not supported (64, 128, 256)");
  FATHOM_CHECK(p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0, "attention: n_head ", p.n_head,
               " is not a multiple of n_head_kv ", p.n_head_kv);
  FATHOM_CHECK(p.kv_type == KvType::F16, "attention: KV type ", int(p.kv_type),
               " is not implemented (only F16)");
  FATHOM_CHECK(p.block_size > 0 && p.max_q_len >= 1 && p.n_seqs >= 1, "attention: bad sizes (block_size ",
               p.block_size, ", max_q_len ", p.max_q_len, ", n_seqs ", p.n_seqs, ")");
  if (p.rope.k) {
    const RopeKvParams& r = p.rope;
    FATHOM_CHECK(p.max_q_len == 1, "attention: fused RoPE is for decode only (max_q_len ", p.max_q_len, ")");
    FATHOM_CHECK(r.n_rot > 0 && r.n_rot % 2 == 0 && r.n_rot <= p.head_dim, "attention: fused RoPE n_rot ",
                 r.n_rot, " must be even, positive and at most head_dim ", p.head_dim);
    FATHOM_CHECK(r.v && r.slot_mapping && r.k_cache == p.k_cache && r.v_cache == p.v_cache &&
                     r.kv_type == KvType::F16 && r.block_size == p.block_size,
                 "attention: fused RoPE needs v, slot_mapping and this call's F16 cache and block size");
  }
}

}  // namespace

size_t attention_workspace_bytes(const AttentionParams& p) {
  if (p.max_q_len > 1 || p.n_seqs <= 0 || p.n_head_kv <= 0) return 0;
  return attention_decode_workspace_bytes(p);  // the prefill kernels need none
}

void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.n_seqs <= 0 || p.n_tokens <= 0) return;
  check_params(p);
  AttnArgs a{};
  a.p = p;
  a.scale = p.scale != 0.0f ? p.scale : 1.0f / sqrtf(float(p.head_dim));
  if (p.max_q_len == 1) {
    launch_attention_decode(p, a.scale, stream);
    return;
  }
  // Prefill cost hints from the host-side bounds (the real kv_len / q_pos live on the device):
  // every sequence is counted at max_kv_len keys (at most sliding_window of them per query), so
  // the bytes and flops are upper bounds; K/V fp16, q and out fp32; QK^T and PV are 2 * D flops
  // each.
  const double D = double(p.head_dim);
  const double kv_keys = double(p.sliding_window > 0 ? std::min(p.max_kv_len, p.sliding_window)
                                                     : p.max_kv_len);
  auto kv_bytes = [&](double keys) { return double(p.n_seqs) * p.n_head_kv * keys * D * 2.0 * 2.0; };
  const double qo_bytes = double(p.n_tokens) * p.n_head * D * 4.0 * 2.0;
  // Prefill: K/V counted once per (seq, kv head) (the blocks of one sequence re-read them from
  // L2), the window plus the chunk at most. Flops: a causal query at the end of a context of
  // max_kv_len whose last max_q_len positions are the queries sees on average
  // max_kv_len - (max_q_len - 1) / 2 keys (exactly (N + 1) / 2 for one N-token prompt: the
  // N (N + 1) / 2 visible pairs), capped by the window; 4 D flops per visible (query, key).
  const double prefill_keys =
      p.sliding_window > 0
          ? std::min(double(p.max_kv_len), double(p.sliding_window) + double(p.max_q_len))
          : double(p.max_kv_len);
  double keys_per_query =
      p.causal ? double(p.max_kv_len) - double(p.max_q_len - 1) / 2.0 : double(p.max_kv_len);
  keys_per_query = std::max(1.0, std::min(keys_per_query, kv_keys));
  const double prefill_bytes = kv_bytes(prefill_keys) + qo_bytes;
  const double prefill_flops = double(p.n_tokens) * p.n_head * keys_per_query * 4.0 * D;
  // FATHOM_ATTN_PREFILL: unset = tensor cores (8 warps / 128 query rows per block at D 128 / 256,
  // 4 warps at D 64); "w4" = 4 warps (3 blocks per SM at D <= 128); "b2" = 4 warps, 2 blocks per
  // SM; "w8" = 8 warps; "scalar" = the kernel below. Read per launch (a getenv per layer) so tests
  // and benches can switch variants in-process.
  const char* variant = std::getenv("FATHOM_ATTN_PREFILL");
  const bool scalar = variant && std::strcmp(variant, "scalar") == 0;
  if (!scalar) {
    const int v = !variant                           ? 0
                  : std::strcmp(variant, "w4") == 0 ? 1
                  : std::strcmp(variant, "b2") == 0 ? 2
                  : std::strcmp(variant, "w8") == 0 ? 3
                                                    : 0;
    launch_attention_prefill_tc(p, a.scale, v, prefill_bytes, prefill_flops, stream);
    return;
  }
  const int g = p.n_head / p.n_head_kv;
  a.n_head_groups = (g + kPrefillRows - 1) / kPrefillRows;
  a.heads_per_group = (g + a.n_head_groups - 1) / a.n_head_groups;
  const int tok_per_block = kPrefillRows / a.heads_per_group;
  const dim3 grid(unsigned((p.max_q_len + tok_per_block - 1) / tok_per_block), unsigned(p.n_seqs),
                  unsigned(p.n_head_kv * a.n_head_groups));
  const size_t smem = size_t(kPrefillRows) * p.head_dim * sizeof(float) +
                      size_t(kPrefillKeys) * (p.head_dim + 8) * 2 + size_t(kPrefillKeys) * p.head_dim * 2;
  auto go = [&](auto kernel) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    launch_cost_hint(prefill_bytes, prefill_flops);
    launch_kernel(kernel, grid, dim3(128), smem, stream, a);
  };
  switch (p.head_dim) {
    case 64: go(attention_prefill_kernel<64>); break;
    case 128: go(attention_prefill_kernel<128>); break;
    default: go(attention_prefill_kernel<256>); break;
  }
}

}  // namespace fathom::cuda

// Attention over the paged fp16 KV cache (layout and masking rules: ops.cuh).
//   out[t,h] = sum_j softmax_j(mask(softcap(scale * q[t,h] . k[j,h/g]))) v[j,h/g]
// Softmax is online (running max m, running sum l, rescaled accumulator) in fp32; scores never
// reach global memory.
//
// Decode (max_q_len == 1): the split kernel of attention_decode.cu (K/V streamed through shared
// memory by cp.async, both products on tensor cores, splits cut on the device from the real
// kv_len; its header says how). FATHOM_ATTN_DECODE=old selects the older kernel below instead
// (read once per process; attention_decode_set_override() for tests and benches).
//
// Old decode kernel, flash-decoding: grid (n_seqs, n_head_kv * head groups, n_splits).
// A block reads the keys of ONE kv head in its split of positions once and serves all the query
// heads sharing it (up to kDecodeMaxHeads = 8 of them; more heads take more head groups; the
// per-thread q/acc arrays are sized by a template G in {1, 2, 4, 8} >= heads per group, so a
// GQA-4 model keeps ~100 registers and 4 blocks per SM). Inside,
// a token's head vector is read by D/8 lanes with one 16-byte load each (D = head_dim), so a warp
// handles 32 / (D/8) tokens at a time, loading the next step's K/V before computing the current
// one; the 4 warps stride through the split and merge their
// (m, l, acc) states through shared memory at the end. With one split the block normalises and
// writes out; with several it writes unnormalised partials (acc, m, l) to the workspace and
// attention_reduce_kernel merges them. Bytes: K and V of the context once per kv head.
//
// Split merge (attention_reduce_kernel), one block per (sequence, head), the splits in parallel:
//   M = max_s m_s, w_s = 2^(m_s - M), L = sum_s w_s l_s, out = (sum_s w_s acc_s) / L
// warp 0 takes the (m_s, l_s) pairs one split per lane (shuffle max and sum), then every thread
// takes 4 dims of D for a strided subset of the splits, and the subsets are added in shared
// memory. (Was: one thread per dim walking all splits in a dependent loop, twice: ~70 us at 128
// splits of an 8k context on the H200.)
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
#include <cfloat>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cuda/attention_decode.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/device_info.h"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {

// attention_prefill.cu
void launch_attention_prefill_tc(const AttentionParams& p, float scale, int variant, double bytes,
                                 double flops, cudaStream_t stream);

namespace {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kDecodeMaxHeads = 8;
constexpr int kPrefillRows = 16;      // (token, head) rows per block
constexpr int kPrefillRowsPerWarp = 4;
constexpr int kPrefillKeys = 32;      // keys per tile
constexpr int kReduceThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

struct AttnArgs {
  AttentionParams p;
  int32_t n_splits;
  int32_t split_len;
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

// ---- decode ------------------------------------------------------------------------------------

template <int D, int G>
__global__ void __launch_bounds__(kDecodeThreads) attention_decode_kernel(const __grid_constant__ AttnArgs a) {
  constexpr int LPT = D / 8;          // lanes per token
  constexpr int TPW = 32 / LPT;       // tokens per warp step
  constexpr int kSlots = kDecodeWarps * TPW;
  __shared__ float s_m[G][kSlots];
  __shared__ float s_l[G][kSlots];
  __shared__ float s_acc[G][kSlots][D];
  pdl_wait();
  pdl_trigger();

  const AttentionParams& p = a.p;
  const int seq = blockIdx.x;
  const int kvh = blockIdx.y / a.n_head_groups;
  const int hgroup = blockIdx.y % a.n_head_groups;
  const int g = p.n_head / p.n_head_kv;
  const int h0 = kvh * g + hgroup * a.heads_per_group;
  const int nh = min(a.heads_per_group, g - hgroup * a.heads_per_group);
  const int split = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sub = lane / LPT, dl = (lane % LPT) * 8;  // token slot in the warp, first dim
  const int slot = warp * TPW + sub;

  const int t = p.q_seq_start[seq];
  const int qp = p.q_pos[t];
  const int kvl = p.kv_len[seq];
  int lo, hi;
  visible_range(p, qp, kvl, lo, hi);
  lo = max(lo, split * a.split_len);
  hi = min(hi, (split + 1) * a.split_len);
  const int32_t* bt = p.block_table + int64_t(seq) * p.max_blocks_per_seq;

  float q[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (h < nh) {
      const float* qh = p.q + (int64_t(t) * p.n_head + h0 + h) * D + dl;
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] = qh[e] * a.scale;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] = 0.0f;
    }
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.0f;
  }

  // Warp-uniform loop: every lane runs the same number of steps so the shuffles stay full-warp.
  // The K/V rows of the next step are loaded before the current step is computed, so the
  // block-table -> K/V dependent loads of two steps are in flight at once.
  constexpr int kStep = kDecodeWarps * TPW;
  float kf[8], vf[8], kn[8], vn[8];
  auto load_kv = [&](int j, float* kd, float* vd) {
    if (j < hi) {
      load8(kv_row(p.k_cache, p, bt, j, kvh, D) + dl, kd);
      load8(kv_row(p.v_cache, p, bt, j, kvh, D) + dl, vd);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) kd[e] = vd[e] = 0.0f;
    }
  };
  load_kv(lo + warp * TPW + sub, kf, vf);
  for (int j0 = lo + warp * TPW; j0 < hi; j0 += kStep) {
    const int j = j0 + sub;
    const bool valid = j < hi;
    load_kv(j + kStep, kn, vn);
#pragma unroll
    for (int h = 0; h < G; ++h) {
      if (h >= nh) break;
      float s = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) s = fmaf(q[h][e], kf[e], s);
#pragma unroll
      for (int off = LPT / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
      if (valid) {
        s = apply_softcap(s, p.softcap) * kLog2e;
        const float m_new = fmaxf(m[h], s);
        const float corr = exp2f(m[h] - m_new);  // m = -inf -> 0
        const float pj = exp2f(s - m_new);
        l[h] = l[h] * corr + pj;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(acc[h][e], corr, pj * vf[e]);
        m[h] = m_new;
      }
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      kf[e] = kn[e];
      vf[e] = vn[e];
    }
  }

  // Merge the kSlots partial states of each head.
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (h >= nh) break;
    if (lane % LPT == 0) {
      s_m[h][slot] = m[h];
      s_l[h][slot] = l[h];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) s_acc[h][slot][dl + e] = acc[h][e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nh * D; i += blockDim.x) {
    const int h = i / D, d = i % D;
    float M = -INFINITY;
    for (int s = 0; s < kSlots; ++s) M = fmaxf(M, s_m[h][s]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY) {
      for (int s = 0; s < kSlots; ++s) {
        const float w = exp2f(s_m[h][s] - M);
        L += s_l[h][s] * w;
        O += s_acc[h][s][d] * w;
      }
    }
    const int64_t row = int64_t(t) * p.n_head + h0 + h;
    if (a.n_splits == 1) {
      p.out[row * D + d] = L > 0.0f ? O / L : 0.0f;
    } else {
      float* ws = static_cast<float*>(p.workspace);
      const int64_t part = int64_t(seq) * p.n_head + h0 + h;  // decode: one query per sequence
      ws[(part * a.n_splits + split) * D + d] = O;
      if (d == 0) {
        float* ml = ws + int64_t(p.n_seqs) * p.n_head * a.n_splits * D;
        ml[(part * a.n_splits + split) * 2] = M;
        ml[(part * a.n_splits + split) * 2 + 1] = L;
      }
    }
  }
}

// Merges the split partials of one (sequence, head): grid (n_seqs, n_head), kReduceThreads
// threads, dynamic shared memory n_splits floats (the weights w_s).
__global__ void __launch_bounds__(kReduceThreads) attention_reduce_kernel(const __grid_constant__ AttnArgs a) {
  extern __shared__ float reduce_w[];                 // [n_splits]
  __shared__ float4 s_part[kReduceThreads];           // [groups][D / 4] partial sums
  __shared__ float s_L;
  pdl_wait();
  pdl_trigger();
  const AttentionParams& p = a.p;
  const int D = p.head_dim, n = a.n_splits;
  const int seq = blockIdx.x, h = blockIdx.y;
  const int64_t part = int64_t(seq) * p.n_head + h;
  const float* ws = static_cast<const float*>(p.workspace) + part * n * D;  // [n][D]
  const float* ml = static_cast<const float*>(p.workspace) +
                    int64_t(p.n_seqs) * p.n_head * n * D + part * n * 2;   // [n][2]: m, l
  const int tid = threadIdx.x;

  if (tid < 32) {
    float M = -INFINITY;
#pragma unroll 4
    for (int s = tid; s < n; s += 32) M = fmaxf(M, ml[2 * s]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    // M = -inf: no split saw a key; every weight is 0, so L = 0 and the output is zeros.
    float L = 0.0f;
#pragma unroll 4
    for (int s = tid; s < n; s += 32) {
      const float w = M != -INFINITY ? exp2f(ml[2 * s] - M) : 0.0f;
      reduce_w[s] = w;
      L += ml[2 * s + 1] * w;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
    if (tid == 0) s_L = L;
  }
  __syncthreads();

  // Thread = (4-dim chunk c, split group g): groups = kReduceThreads / (D / 4) (4 at D 256,
  // 16 at D 64), group g takes splits g, g + groups, ...; unrolled so 8 independent float4
  // loads are in flight (128 splits at D 256: 32 splits per thread, 4 rounds of L2 latency).
  const int chunks = D / 4, groups = kReduceThreads / chunks;
  const int c = tid % chunks, g = tid / chunks;
  float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
  for (int s = g; s < n; s += groups) {
    const float w = reduce_w[s];
    const float4 v = *reinterpret_cast<const float4*>(ws + int64_t(s) * D + 4 * c);
    o.x = fmaf(v.x, w, o.x);
    o.y = fmaf(v.y, w, o.y);
    o.z = fmaf(v.z, w, o.z);
    o.w = fmaf(v.w, w, o.w);
  }
  s_part[tid] = o;
  __syncthreads();
  if (tid < chunks) {
    float4 O = s_part[tid];
    for (int k = 1; k < groups; ++k) {
      const float4 v = s_part[k * chunks + tid];
      O.x += v.x;
      O.y += v.y;
      O.z += v.z;
      O.w += v.w;
    }
    const float L = s_L;
    const int t = p.q_seq_start[seq];
    float* out = p.out + (int64_t(t) * p.n_head + h) * D + 4 * tid;
    out[0] = L > 0.0f ? O.x / L : 0.0f;
    out[1] = L > 0.0f ? O.y / L : 0.0f;
    out[2] = L > 0.0f ? O.z / L : 0.0f;
    out[3] = L > 0.0f ? O.w / L : 0.0f;
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

int sm_count() { return device_info().sm_count; }

// Decode split plan from host-side bounds only (same answer at capture and replay).
// Target 4 blocks per SM (about the register-limited residency of the G = 4 kernels).
// Worked example: 1 sequence, 1 kv head, 1 head group, max_kv_len 8192 on 132 SMs: target
// 4 * 132 = 528 blocks, capped at 8192 / 64 = 128 splits of 64 keys (64 x 2 x 512 B = 64 KB each).
// 8 sequences x 8 kv heads at 4096: 64 base blocks -> 9 splits of 480 keys, 576 blocks.
// max_splits: an upper bound on n_splits for every max_kv_len up to p.max_kv_len (the rounding
// of split_len makes n_splits itself not monotone in the length), for workspace sizing.
void plan_splits(const AttentionParams& p, int n_sms, int& n_splits, int& split_len,
                 int& n_head_groups, int& heads_per_group, int* max_splits = nullptr) {
  const int g = p.n_head / p.n_head_kv;
  n_head_groups = (g + kDecodeMaxHeads - 1) / kDecodeMaxHeads;
  heads_per_group = (g + n_head_groups - 1) / n_head_groups;
  const int64_t base_blocks = int64_t(p.n_seqs) * p.n_head_kv * n_head_groups;
  const int max_kv = p.max_kv_len > 0 ? p.max_kv_len : 1;
  int64_t want = (4 * int64_t(n_sms) + base_blocks - 1) / base_blocks;
  const int64_t by_len = (max_kv + 63) / 64;  // at least 64 keys per split
  if (want > by_len) want = by_len;
  if (want < 1) want = 1;
  if (max_splits) *max_splits = int(want);
  split_len = int((max_kv + want - 1) / want);
  split_len = (split_len + 31) / 32 * 32;
  n_splits = (max_kv + split_len - 1) / split_len;
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
}

}  // namespace

size_t attention_workspace_bytes(const AttentionParams& p) {
  if (p.max_q_len > 1 || p.n_seqs <= 0 || p.n_head_kv <= 0) return 0;
  // The larger of the two decode kernels' needs, whichever runs (the choice can change in-process).
  const size_t split_need = attention_decode_workspace_bytes(p);
  int n_splits, split_len, n_hg, hpg, max_splits;
  plan_splits(p, sm_count(), n_splits, split_len, n_hg, hpg, &max_splits);
  if (max_splits <= 1) return split_need;
  return std::max(split_need, size_t(p.n_seqs) * p.n_head * max_splits * (p.head_dim + 2) * sizeof(float));
}

void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.n_seqs <= 0 || p.n_tokens <= 0) return;
  check_params(p);
  AttnArgs a{};
  a.p = p;
  a.scale = p.scale != 0.0f ? p.scale : 1.0f / sqrtf(float(p.head_dim));
  // Cost hints from the host-side bounds (the real kv_len / q_pos live on the device): every
  // sequence is counted at max_kv_len keys (at most sliding_window of them per query), so the
  // bytes and flops are upper bounds; K/V fp16, q and out fp32; QK^T and PV are 2 * D flops each.
  const double D = double(p.head_dim);
  const double kv_keys = double(p.sliding_window > 0 ? std::min(p.max_kv_len, p.sliding_window)
                                                     : p.max_kv_len);
  auto kv_bytes = [&](double keys) { return double(p.n_seqs) * p.n_head_kv * keys * D * 2.0 * 2.0; };
  const double qo_bytes = double(p.n_tokens) * p.n_head * D * 4.0 * 2.0;
  if (p.max_q_len == 1) {
    if (!attention_decode_uses_old_kernel()) {
      launch_attention_decode(p, a.scale, stream);
      return;
    }
    plan_splits(p, sm_count(), a.n_splits, a.split_len, a.n_head_groups, a.heads_per_group);
    if (a.n_splits > 1) {
      const size_t need = size_t(p.n_seqs) * p.n_head * a.n_splits * (p.head_dim + 2) * sizeof(float);
      FATHOM_CHECK(p.workspace && p.workspace_bytes >= need, "attention: decode workspace of ",
                   p.workspace_bytes, " bytes, ", need, " needed (attention_workspace_bytes)");
      FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.workspace) % 16 == 0,
                   "attention: decode workspace is not 16-byte aligned");
    }
    // Decode writes the partials (D + 2 floats per (seq, head, split)) instead of out when split.
    const double parts = double(p.n_seqs) * p.n_head * a.n_splits * (D + 2.0) * 4.0;
    const double decode_bytes = kv_bytes(kv_keys) + (a.n_splits > 1 ? qo_bytes / 2.0 + parts : qo_bytes);
    const double decode_flops = double(p.n_seqs) * p.n_head * kv_keys * 4.0 * D;
    const dim3 grid(unsigned(p.n_seqs), unsigned(p.n_head_kv * a.n_head_groups), unsigned(a.n_splits));
    auto go_decode = [&](auto kernel) {
      launch_cost_hint(decode_bytes, decode_flops);
      launch_kernel(kernel, grid, dim3(kDecodeThreads), 0, stream, a);
    };
    auto by_g = [&](auto d_const) {
      constexpr int Dc = decltype(d_const)::value;
      if (a.heads_per_group <= 1) go_decode(attention_decode_kernel<Dc, 1>);
      else if (a.heads_per_group <= 2) go_decode(attention_decode_kernel<Dc, 2>);
      else if (a.heads_per_group <= 4) go_decode(attention_decode_kernel<Dc, 4>);
      else go_decode(attention_decode_kernel<Dc, 8>);
    };
    switch (p.head_dim) {
      case 64: by_g(std::integral_constant<int, 64>{}); break;
      case 128: by_g(std::integral_constant<int, 128>{}); break;
      default: by_g(std::integral_constant<int, 256>{}); break;
    }
    if (a.n_splits > 1) {
      // Reads every partial, writes out; 2 flops per partial element plus the weights.
      launch_cost_hint(parts + qo_bytes / 2.0, double(p.n_seqs) * p.n_head * a.n_splits * (2.0 * D + 4.0));
      launch_kernel(attention_reduce_kernel, dim3(unsigned(p.n_seqs), unsigned(p.n_head)),
                    dim3(kReduceThreads), size_t(a.n_splits) * sizeof(float), stream, a);
    }
    return;
  }
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
  a.n_splits = 1;
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

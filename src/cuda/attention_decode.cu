// Decode attention over the paged fp16 KV cache (one query per sequence; layout and masking
// rules: ops.cuh), flash-decoding with the K/V stream through shared memory:
//   out[s,h] = sum_j softmax_j(mask(softcap(scale * q[s,h] . k[j,h/g]))) v[j,h/g]
// Bytes: K and V of every visible key once per kv head, n_seqs * n_head_kv * keys * D * 4 (fp16
// K + V); q, out and the split partials are < 1% of that from a few hundred keys on. Flops:
// 4 D per (key, query head) -- at GQA 4 and D 128, 2 flops per KV byte: on fp32 FMA units with
// shuffles that is about as much issue time as the 4.8 TB/s of HBM leaves (the old fp32 kernel,
// since deleted, measured 23% of bandwidth), so here the two products run on tensor cores.
//
// Grid (n_splits, n_head_kv * head groups, n_seqs), one warp per block: block (x, y, z) takes
// split x of the visible keys of sequence z for the up to 8 query heads of head group y of one kv
// head (GQA: the K/V bytes are read once for all of them).
//
// Split (seq_split, the same function in both kernels): the n visible keys of a sequence are cut
// ON THE DEVICE, from its real kv_len, into n_act <= n_splits chunks of
//   chunk = max(kDecMinChunk, round_up(ceil(n / n_splits), TK))
// keys (kDecMinChunk = 64: at a few hundred keys, e.g. 576, 9 splits of <= 2 tiles per kv head
// instead of 5 of <= 4 tiles at the earlier 128 -- a one-warp block walks its tiles serially, so
// at short contexts the split's tile count is the kernel's latency); blocks x >= n_act exit. The host fixes only n_splits, from host-side bounds (n_seqs,
// head counts, max_kv_len, the SM count), so a graph captured with max_kv_len = n_ctx replays
// with every real length and still spreads a short context over the SMs. n_act == 1: the block
// writes out itself; else it writes unnormalised partials (acc, m, l) to the workspace and
// attention_decode_merge_kernel combines them.
//
// Per block (one warp, lane = gid * 4 + tig):
//   - K/V tiles of TK = 4096 / D keys (8 KB of K + 8 KB of V) stream through a ring of
//     kDecStages = 3 shared-memory slots with 16-byte cp.async: two tiles (32 KB) in flight while
//     one is computed, four blocks per SM on the H200 (48 KB each): 128 KB in flight per SM.
//     Every key row is placed by its own page lookup (any block_size); the page ids of the next
//     tile are loaded one tile ahead. Rows past the split are zero-filled. The 16-byte chunks of
//     a row are XOR-swizzled by (row & 7) so the cp.async stores and the ldmatrix reads of 8
//     rows at one column hit 8 different bank groups.
//   - S = Q K^T by mma.sync m16n8k16 (fp16 in, fp32 accumulate) with the 16 A rows holding the
//     query heads twice: rows 0-7 = fp16(q), rows 8-15 = fp16((q - fp16(q)) 2^11) for heads 0-7
//     of the group; a lane's c0 + 2^-11 c2 (rows gid and gid + 8) is the score of head gid to
//     ~fp32 accuracy (K is fp16 already, products are exact, sums fp32). B = K^T fragments by
//     ldmatrix from the [key][dim] rows.
//   - online softmax in fp32 (exp2; m and l per head, l summed over the quad at the end).
//   - O += P V: P split the same way (rows 0-7 fp16(p), rows 8-15 the scaled remainder), the S
//     layout of two 8-key n-tiles IS the A fragment of one 16-key k-step; V fragments by
//     ldmatrix.trans. O keeps only the combined rows (c0 + 2^-11 c2) between tiles, D / 4
//     registers, and is updated in fp32 FMAs (O * corr + the tile's P V), not through the mma
//     accumulator.
// Heads of a group beyond the real ones get q = 0 and are not written. More than 8 query heads
// per kv head take more head groups (K/V re-read, from L2 mostly).
//
// PDL: both kernels wait first (q, kv_len, the cache and the block table are all written by
// earlier kernels or copies) and then let the next kernel launch: that can only happen once every
// block has started, so a waiting dependent never takes a slot a block of this grid needs.
#include "cuda/attention_decode.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "cuda/cuda_check.cuh"
#include "cuda/device_info.h"
#include "cuda/pdl.cuh"
#include "cuda/ptx.cuh"
#include "cuda/rope_math.cuh"

namespace fathom::cuda {
namespace {

constexpr int kDecStages = 3;
constexpr int kDecTileElems = 4096;  // TK * D: 8 KB of fp16 per K tile and per V tile
constexpr int kDecTileBytes = kDecTileElems * 2;
constexpr int kDecSmemBytes = kDecStages * 2 * kDecTileBytes;  // 48 KB, static
constexpr int kDecMaxHeads = 8;      // query heads per block: mma rows 0-7 (and 8-15, the remainders)
constexpr int kDecMinChunk = 64;     // keys per split at least (a multiple of every TK)
constexpr int kMergeThreads = 128;
constexpr float kDecLog2e = 1.4426950408889634f;

struct DecodeArgs {
  AttentionParams p;
  float qscale;             // scale * log2(e); scale alone with softcap (tanh in natural units)
  int32_t n_splits;         // grid x; the partials' stride per (seq, head)
  int32_t quantum;          // TK: split lengths are multiples of it
  int32_t n_head_groups;    // query-head groups per kv head
  int32_t heads_per_group;  // <= kDecMaxHeads
  int32_t bs_shift;         // log2(block_size) when a power of two, else -1
};

// ---- device helpers ----------------------------------------------------------------------------

// smem_u32, cp_async16(_zfill), cp_async_commit / wait, ldsm_x4(_trans): ptx.cuh.

// c (16x8 fp32) += a (16x16 fp16, row-major) * b (16x8 fp16, col-major). Fragments (gid = lane/4,
// tig = lane%4): a = {(gid, 2tig..+1), (gid+8, 2tig..+1), (gid, 2tig+8..+9), (gid+8, 2tig+8..+9)};
// b = {(k 2tig..+1, n gid), (k 2tig+8..+9, n gid)}; c = {(gid, 2tig), (gid, 2tig+1), (gid+8, 2tig),
// (gid+8, 2tig+1)}.
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// x0, x1 -> fp16 pairs (hi, lo) with x ~= hi + lo * 2^-11 to ~2^-22 relative: hi = fp16(x),
// lo = fp16((x - hi) * 2^11) (exact difference and scaling; the scaling keeps lo out of the fp16
// subnormals for |x| >= 2^-14, so the split holds whether or not the tensor cores flush them).
// The lower half of a packed register is the lower column.
constexpr float kLoScale = 2048.0f, kLoUnscale = 1.0f / 2048.0f;
__device__ __forceinline__ void split_pack(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __half h0 = __float2half_rn(x0), h1 = __float2half_rn(x1);
  const __half l0 = __float2half_rn((x0 - __half2float(h0)) * kLoScale);
  const __half l1 = __float2half_rn((x1 - __half2float(h1)) * kLoScale);
  const __half2 hh = __halves2half2(h0, h1), ll = __halves2half2(l0, l1);
  hi = *reinterpret_cast<const uint32_t*>(&hh);
  lo = *reinterpret_cast<const uint32_t*>(&ll);
}

// The decode query of sequence seq (token t), its visible keys [lo, hi) and their split:
// n_act chunks of `chunk` keys (the last one shorter). n_act = 0: the sequence has no query in
// this batch; n_act = 1 also when no key is visible (the block writes zeros).
struct SeqSplit {
  int t, lo, hi, chunk, n_act;
};
__device__ __forceinline__ SeqSplit seq_split(const DecodeArgs& a, int seq) {
  const AttentionParams& p = a.p;
  SeqSplit s;
  s.t = p.q_seq_start[seq];
  const int q_end = p.q_seq_start[seq + 1];
  const int kvl = p.kv_len[seq];
  s.lo = s.hi = 0;
  s.chunk = kDecMinChunk;
  s.n_act = 0;
  if (q_end <= s.t) return s;
  const int qp = p.q_pos[s.t];
  s.hi = p.causal ? min(kvl, qp + 1) : kvl;
  s.lo = p.sliding_window > 0 ? max(0, qp - p.sliding_window + 1) : 0;
  const int n = max(0, s.hi - s.lo);
  const int per = (n + a.n_splits - 1) / a.n_splits;
  s.chunk = max(kDecMinChunk, (per + a.quantum - 1) / a.quantum * a.quantum);
  s.n_act = n > 0 ? (n + s.chunk - 1) / s.chunk : 1;  // <= n_splits: chunk >= ceil(n / n_splits)
  return s;
}

// ---- split kernel ------------------------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(32, 4) attention_decode_split_kernel(const __grid_constant__ DecodeArgs a) {
  constexpr int TK = kDecTileElems / D;  // keys per tile: 64, 32, 16
  constexpr int RB = D * 2;              // bytes per K/V row
  constexpr int CPR = D / 8;             // 16-byte chunks per row: 8, 16, 32
  constexpr int RPI = 32 / CPR;          // rows per warp-wide copy: 4, 2, 1
  constexpr int KPL = (TK + 31) / 32;    // tile keys whose page a lane looks up: 2, 1, 1
  constexpr int NT = TK / 8;             // 8-key n-tiles of S
  constexpr int KS = TK / 16;            // 16-key k-steps of P V
  constexpr int DK = D / 16;             // 16-dim k-steps of Q K^T
  constexpr int DT = D / 8;              // 8-dim n-tiles of O
  static_assert(TK * RB == kDecTileBytes && TK % 16 == 0 && kDecMinChunk % TK == 0, "tile shape");
  constexpr int NCH = (2 * CPR + 31) / 32;  // fused RoPE: 16-byte chunks of the new K and V rows per lane
  __shared__ __align__(128) unsigned char smem[kDecSmemBytes];  // [stage][K tile | V tile]

  // Fused RoPE (p.rope.k set): the cos/sin table of the query's position goes into the last ring
  // slot, which no copy touches before the q and new-row registers below are built (the prologue
  // fills the others). Before pdl_wait: q_seq_start and q_pos are written by no kernel of the
  // step (as in rope.cu), so the double-precision sincos can overlap the previous kernel.
  const bool fused = a.p.rope.k != nullptr;
  float* const rope_cs = reinterpret_cast<float*>(smem + (kDecStages - 1) * 2 * kDecTileBytes);
  float* const rope_sn = rope_cs + D / 2;
  if (fused) {
    const int t0 = a.p.q_seq_start[blockIdx.z];
    if (a.p.q_seq_start[blockIdx.z + 1] > t0) {
      const double pos = double(a.p.q_pos[t0]);
      for (int i = threadIdx.x; i < a.p.rope.n_rot / 2; i += 32) rope_cos_sin(a.p.rope, pos, i, rope_cs[i], rope_sn[i]);
    }
  }

  pdl_wait();
  pdl_trigger();
  if (fused) __syncwarp();

  const AttentionParams& p = a.p;
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / a.n_head_groups;
  const int hgroup = blockIdx.y % a.n_head_groups;
  const int seq = blockIdx.z;
  const SeqSplit ss = seq_split(a, seq);
  if (split >= ss.n_act) return;  // block-uniform
  const int c_lo = ss.lo + split * ss.chunk;
  const int c_hi = min(ss.hi, c_lo + ss.chunk);
  const int n_tiles = c_hi > c_lo ? (c_hi - c_lo + TK - 1) / TK : 0;

  const int lane = threadIdx.x;
  const int gid = lane >> 2, tig = lane & 3;
  const int g = p.n_head / p.n_head_kv;
  const int h0 = kvh * g + hgroup * a.heads_per_group;
  const int nh = min(a.heads_per_group, g - hgroup * a.heads_per_group);
  const bool head_ok = gid < nh;
  // The new key (fused RoPE): position kpos, in this split when has_new.
  const int kpos = fused ? p.q_pos[ss.t] : -1;
  const bool has_new = fused && kpos >= c_lo && kpos < c_hi;

  // Tile copy. Lane roles: the page of tile keys lane + 32 k (k < KPL) is looked up by this lane
  // (one tile ahead); copy instruction `it` moves rows it * RPI + cp_sub, chunk cp_chunk.
  const __half* kc = static_cast<const __half*>(p.k_cache);
  const __half* vc = static_cast<const __half*>(p.v_cache);
  const int32_t* bt = p.block_table + int64_t(seq) * p.max_blocks_per_seq;
  const int cp_chunk = lane % CPR, cp_sub = lane / CPR;
  const uint32_t sbase = smem_u32(smem);
  int nxt_page[KPL], nxt_in[KPL];  // page id (-1: past the split) and row in the page
  auto lookup = [&](int tile) {
#pragma unroll
    for (int k = 0; k < KPL; ++k) {
      const int r = lane + 32 * k;
      const int j = c_lo + tile * TK + r;
      nxt_page[k] = -1;
      nxt_in[k] = 0;
      if (r < TK && j < c_hi && j != kpos) {  // kpos: zero-filled, patched from nrow
        int blk, in;
        if (a.bs_shift >= 0) {
          blk = j >> a.bs_shift;
          in = j & (p.block_size - 1);
        } else {
          blk = j / p.block_size;
          in = j - blk * p.block_size;
        }
        nxt_page[k] = bt[blk];
        nxt_in[k] = in;
      }
    }
  };
  auto issue = [&](int slot) {  // copies the tile looked up last into `slot`
    long long row[KPL];  // cache row index (page * n_head_kv + kvh) * block_size + in, or -1
#pragma unroll
    for (int k = 0; k < KPL; ++k)
      row[k] = nxt_page[k] >= 0
                   ? (static_cast<long long>(nxt_page[k]) * p.n_head_kv + kvh) * p.block_size + nxt_in[k]
                   : -1ll;
    const uint32_t ks = sbase + uint32_t(slot) * (2 * kDecTileBytes);
    const uint32_t vs = ks + kDecTileBytes;
#pragma unroll
    for (int it = 0; it < TK / RPI; ++it) {
      const int r = it * RPI + cp_sub;  // r / 32 == it * RPI / 32: RPI divides 32
      const long long rr = __shfl_sync(0xffffffffu, row[(it * RPI) / 32], (it * RPI) % 32 + cp_sub);
      const bool ok = rr >= 0;
      const int64_t off = ok ? rr * D + cp_chunk * 8 : 0;
      const uint32_t so = uint32_t(r * RB + ((cp_chunk ^ (r & 7)) << 4));
      cp_async16_zfill(ks + so, kc + off, ok);
      cp_async16_zfill(vs + so, vc + off, ok);
    }
  };

#pragma unroll
  for (int t = 0; t < kDecStages - 1; ++t) {
    lookup(t);
    if (t < n_tiles) issue(t);
    cp_async_commit();
  }
  lookup(kDecStages - 1);

  // Q fragments of head gid: qf[kk] = {hi(d, d+1), lo(d, d+1), hi(d+8, d+9), lo(d+8, d+9)} with
  // d = 16 kk + 2 tig; zeros for the group's unused rows.
  uint32_t qf[DK][4];
  {
    const float* qhead = p.q + (int64_t(ss.t) * p.n_head + h0 + (head_ok ? gid : 0)) * D;
    const float* qrow = qhead + 2 * tig;
    float qv[DK][4];  // dims 16 kk + 2 tig + {0, 1, 8, 9}
#pragma unroll
    for (int kk = 0; kk < DK; ++kk) {
      float2 x0 = make_float2(0.0f, 0.0f), x1 = make_float2(0.0f, 0.0f);
      if (head_ok) {
        x0 = *reinterpret_cast<const float2*>(qrow + 16 * kk);
        x1 = *reinterpret_cast<const float2*>(qrow + 16 * kk + 8);
      }
      qv[kk][0] = x0.x;
      qv[kk][1] = x0.y;
      qv[kk][2] = x1.x;
      qv[kk][3] = x1.y;
    }
    if (fused && head_ok) {
      // NORM pairs (2i, 2i + 1) and full-width NEOX pairs (e, e + D / 2) are both in this lane;
      // other layouts (partial NEOX) read the partner from memory.
      const RopeKvParams& r = p.rope;
      if (r.type == RopeType::NORM) {
#pragma unroll
        for (int kk = 0; kk < DK; ++kk)
#pragma unroll
          for (int j = 0; j < 4; j += 2) {
            const int e = 16 * kk + 2 * tig + 4 * j;
            if (e >= r.n_rot) continue;
            const float c = rope_cs[e >> 1], sn = rope_sn[e >> 1], x0 = qv[kk][j], x1 = qv[kk][j + 1];
            qv[kk][j] = rope_first(x0, x1, c, sn);
            qv[kk][j + 1] = rope_second(x0, x1, c, sn);
          }
      } else if (r.n_rot == D) {
#pragma unroll
        for (int kk = 0; kk < DK / 2; ++kk)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int e = 16 * kk + 2 * tig + (j & 1) + 8 * (j >> 1);
            const float c = rope_cs[e], sn = rope_sn[e], x0 = qv[kk][j], x1 = qv[kk + DK / 2][j];
            qv[kk][j] = rope_first(x0, x1, c, sn);
            qv[kk + DK / 2][j] = rope_second(x0, x1, c, sn);
          }
      } else {
#pragma unroll
        for (int kk = 0; kk < DK; ++kk)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int e = 16 * kk + 2 * tig + (j & 1) + 8 * (j >> 1);
            qv[kk][j] = rope_element(r, qhead, e, qv[kk][j], rope_cs, rope_sn);
          }
      }
    }
#pragma unroll
    for (int kk = 0; kk < DK; ++kk) {
      split_pack(qv[kk][0] * a.qscale, qv[kk][1] * a.qscale, qf[kk][0], qf[kk][1]);
      split_pack(qv[kk][2] * a.qscale, qv[kk][3] * a.qscale, qf[kk][2], qf[kk][3]);
    }
  }

  // The new key's rows as fp16, chunk lane + 32 c of [K chunks | V chunks] (what rope_kv_kernel
  // stores): patched into the ring where the copy zero-filled them, and stored to the cache by the
  // block of head group 0 (no block reads that row from the cache in this launch).
  uint4 nrow[NCH];
  if (has_new) {  // warp-uniform (the shuffles below need every lane)
    const RopeKvParams& r = p.rope;
    const float* kr = r.k + (int64_t(ss.t) * p.n_head_kv + kvh) * D;
    const float* vr = r.v + (int64_t(ss.t) * p.n_head_kv + kvh) * D;
    const int64_t slot = r.slot_mapping[ss.t];
    const int64_t crow = slot >= 0 ? ((slot / p.block_size * p.n_head_kv + kvh) * p.block_size + slot % p.block_size) * D : 0;
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
      const int cidx = lane + 32 * c;
      const bool live = cidx < 2 * CPR;
      const bool is_k = cidx < CPR;
      const int e0 = (is_k ? cidx : cidx - CPR) * 8;
      float v[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
      if (live) {
        const float* src = (is_k ? kr : vr) + e0;
        const float4 lo = *reinterpret_cast<const float4*>(src);
        const float4 hi = *reinterpret_cast<const float4*>(src + 4);
        v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w;
        v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
      }
      // Rotation of a K chunk: NORM pairs are inside it; full-width NEOX pairs chunk e0 / 8 with
      // chunk e0 / 8 +- CPR / 2, held by lane ^ (CPR / 2) in the same register (a K lane for a K
      // lane: CPR is a power of two); partial NEOX reads the partner from memory.
      if (r.type != RopeType::NORM && r.n_rot == D) {
        float w[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) w[e] = __shfl_xor_sync(0xffffffffu, v[e], CPR / 2);
        if (live && is_k) {
          const bool first = e0 < D / 2;
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const int i = (first ? e0 : e0 - D / 2) + e;
            v[e] = first ? rope_first(v[e], w[e], rope_cs[i], rope_sn[i]) : rope_second(w[e], v[e], rope_cs[i], rope_sn[i]);
          }
        }
      } else if (live && is_k && r.type == RopeType::NORM) {
#pragma unroll
        for (int e = 0; e < 8; e += 2) {
          if (e0 + e >= r.n_rot) continue;
          const int i = (e0 + e) >> 1;
          const float x0 = v[e], x1 = v[e + 1];
          v[e] = rope_first(x0, x1, rope_cs[i], rope_sn[i]);
          v[e + 1] = rope_second(x0, x1, rope_cs[i], rope_sn[i]);
        }
      } else if (live && is_k) {
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = rope_element(r, kr, e0 + e, v[e], rope_cs, rope_sn);
      }
      __half2 h[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) h[e] = __halves2half2(__float2half_rn(v[2 * e]), __float2half_rn(v[2 * e + 1]));
      nrow[c] = *reinterpret_cast<const uint4*>(h);
      if (live && hgroup == 0 && slot >= 0)
        *reinterpret_cast<uint4*>(static_cast<__half*>(is_k ? r.k_cache : r.v_cache) + crow + e0) = nrow[c];
    }
  }


  float o[DT][2];  // O of head gid, dims 8 d + 2 tig, +1 (unnormalised)
#pragma unroll
  for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // running max (log2 units, quad-uniform), this lane's sum

  // Lane parts of the ldmatrix addresses. K (non-trans): matrix i = chunk 4 q4 + i of keys
  // 8 n + (lane & 7). V (trans): matrix i = keys 16 kk + 8 (i & 1) + (lane & 7), chunk 2 d2 + i / 2.
  const int r7 = lane & 7;
  const int k_mat = lane >> 3;
  const uint32_t v_row = uint32_t((((lane >> 3) & 1) * 8 + r7) * RB);
  const int v_chk = lane >> 4;

  int slot = 0;                        // slot of tile i
  int fill = kDecStages - 1;           // slot of tile i + kDecStages - 1
  for (int i = 0; i < n_tiles; ++i) {
    cp_async_wait<kDecStages - 2>();  // this lane's copies of tile i have landed
    // ... and everyone's are visible; tile i - 1's slot is no longer read. The block is one warp:
    // bar.sync costs what bar.warp.sync does and is the documented cp.async pairing.
    __syncthreads();
    if (i + kDecStages - 1 < n_tiles) issue(fill);
    cp_async_commit();
    lookup(i + kDecStages);
    fill = fill + 1 == kDecStages ? 0 : fill + 1;

    const uint32_t kt = sbase + uint32_t(slot) * (2 * kDecTileBytes);
    const uint32_t vt = kt + kDecTileBytes;
    const int j0 = c_lo + i * TK;
    if (has_new && kpos >= j0 && kpos < j0 + TK) {  // warp-uniform: the new key's tile
      const int r = kpos - j0;
      unsigned char* ks = smem + slot * (2 * kDecTileBytes) + r * RB;
#pragma unroll
      for (int c = 0; c < NCH; ++c) {
        const int cidx = lane + 32 * c;
        if (cidx >= 2 * CPR) continue;
        const bool is_k = cidx < CPR;
        const int chunk = is_k ? cidx : cidx - CPR;
        *reinterpret_cast<uint4*>(ks + (is_k ? 0 : kDecTileBytes) + ((chunk ^ (r & 7)) << 4)) = nrow[c];
      }
      __syncwarp();
    }
    slot = slot + 1 == kDecStages ? 0 : slot + 1;

    // S: s[n] = {hi(key 8n + 2tig), hi(+1), lo(key 8n + 2tig), lo(+1)} of head gid.
    float s[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int q4 = 0; q4 < D / 32; ++q4) {
      const uint32_t kcol = uint32_t(((q4 * 4 + k_mat) ^ r7) << 4);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(kt + uint32_t((n * 8 + r7) * RB) + kcol, b0, b1, b2, b3);
        mma16816(s[n], qf[2 * q4], b0, b1);
        mma16816(s[n], qf[2 * q4 + 1], b2, b3);
      }
    }
    float sc[NT][2];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      sc[n][0] = fmaf(s[n][2], kLoUnscale, s[n][0]);
      sc[n][1] = fmaf(s[n][3], kLoUnscale, s[n][1]);
    }
    if (p.softcap > 0.0f) {
      const float cap = p.softcap, inv = 1.0f / p.softcap;
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) sc[n][e] = cap * tanhf(sc[n][e] * inv) * kDecLog2e;
    }
    if (j0 + TK > c_hi) {  // warp-uniform: the split's last, partial tile
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (j0 + n * 8 + 2 * tig + e >= c_hi) sc[n][e] = -INFINITY;
    }
    float mx = m;
#pragma unroll
    for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(sc[n][0], sc[n][1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mref = mx == -INFINITY ? 0.0f : mx;  // nothing visible yet: p = 0, no NaN
    const float corr = exp2f(m - mref);               // m = -inf: 0
    m = mx;
    l *= corr;
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sc[n][e] = exp2f(sc[n][e] - mref);
        l += sc[n][e];
      }

    // P fragments: k-step kk = keys 16 kk .. 16 kk + 15 = n-tiles 2 kk and 2 kk + 1.
    uint32_t pa[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      split_pack(sc[2 * kk][0], sc[2 * kk][1], pa[kk][0], pa[kk][1]);
      split_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1], pa[kk][2], pa[kk][3]);
    }
    // O = O * corr + P V, two 8-dim n-tiles per V load; c[0..1] (p hi) + 2^-11 c[2..3] (p lo). The
    // tile's P V starts from zero and is added to O in fp32 outside the mma: the tensor core's
    // accumulator alignment may round toward zero, and O passed through it would collect that
    // bias once per tile (up to 1024 tiles in an unsplit 32k context).
#pragma unroll
    for (int d2 = 0; d2 < D / 16; ++d2) {
      float c0[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      float c1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      const int chunk = 2 * d2 + v_chk;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_trans(vt + uint32_t(kk * 16 * RB) + v_row + uint32_t((chunk ^ r7) << 4), b0, b1, b2, b3);
        mma16816(c0, pa[kk], b0, b1);
        mma16816(c1, pa[kk], b2, b3);
      }
      o[2 * d2][0] = fmaf(o[2 * d2][0], corr, fmaf(c0[2], kLoUnscale, c0[0]));
      o[2 * d2][1] = fmaf(o[2 * d2][1], corr, fmaf(c0[3], kLoUnscale, c0[1]));
      o[2 * d2 + 1][0] = fmaf(o[2 * d2 + 1][0], corr, fmaf(c1[2], kLoUnscale, c1[0]));
      o[2 * d2 + 1][1] = fmaf(o[2 * d2 + 1][1], corr, fmaf(c1[3], kLoUnscale, c1[1]));
    }
  }
  cp_async_wait<0>();

  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (!head_ok) return;
  const int h = h0 + gid;
  if (ss.n_act == 1) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* out = p.out + (int64_t(ss.t) * p.n_head + h) * D + 2 * tig;
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<float2*>(out + 8 * d) = make_float2(o[d][0] * inv, o[d][1] * inv);
  } else {
    float* ws = static_cast<float*>(p.workspace);
    const int64_t part = (int64_t(seq) * p.n_head + h) * a.n_splits + split;
    float* acc = ws + part * D + 2 * tig;
#pragma unroll
    for (int d = 0; d < DT; ++d) *reinterpret_cast<float2*>(acc + 8 * d) = make_float2(o[d][0], o[d][1]);
    if (tig == 0) {
      float* ml = ws + int64_t(p.n_seqs) * p.n_head * a.n_splits * D + part * 2;
      ml[0] = m;
      ml[1] = l;
    }
  }
}

// ---- merge -------------------------------------------------------------------------------------

// One block per (query head, sequence): M = max_s m_s, w_s = 2^(m_s - M), L = sum_s w_s l_s,
// out = sum_s w_s acc_s / L over the n_act splits (seq_split, as the split kernel computed it).
// Dynamic shared memory: n_splits floats (the weights).
__global__ void __launch_bounds__(kMergeThreads) attention_decode_merge_kernel(const __grid_constant__ DecodeArgs a) {
  extern __shared__ float merge_w[];  // [n_splits]
  __shared__ float4 s_part[kMergeThreads];
  __shared__ float s_L;
  pdl_wait();
  pdl_trigger();
  const AttentionParams& p = a.p;
  const int h = blockIdx.x, seq = blockIdx.y;
  const SeqSplit ss = seq_split(a, seq);
  const int n = ss.n_act;
  if (n <= 1) return;  // block-uniform: the split kernel wrote out (or there is no query)
  const int D = p.head_dim;
  const int64_t part0 = (int64_t(seq) * p.n_head + h) * a.n_splits;
  const float* ws = static_cast<const float*>(p.workspace);
  const float* acc = ws + part0 * D;                                                // [n][D]
  const float* ml = ws + int64_t(p.n_seqs) * p.n_head * a.n_splits * D + part0 * 2;  // [n][2]
  const int tid = threadIdx.x;

  if (tid < 32) {
    float M = -INFINITY;
    for (int s = tid; s < n; s += 32) M = fmaxf(M, ml[2 * s]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    float L = 0.0f;
    for (int s = tid; s < n; s += 32) {
      const float w = M != -INFINITY ? exp2f(ml[2 * s] - M) : 0.0f;
      merge_w[s] = w;
      L += ml[2 * s + 1] * w;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
    if (tid == 0) s_L = L;
  }
  __syncthreads();

  // Thread = (4-dim chunk c, split group gr): kMergeThreads / (D / 4) groups (8 at D 64, 2 at
  // D 256); group gr takes splits gr, gr + groups, ...
  const int chunks = D / 4, groups = kMergeThreads / chunks;
  const int c = tid % chunks, gr = tid / chunks;
  float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
  for (int s = gr; s < n; s += groups) {
    const float w = merge_w[s];
    const float4 v = *reinterpret_cast<const float4*>(acc + int64_t(s) * D + 4 * c);
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
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float* out = p.out + (int64_t(ss.t) * p.n_head + h) * D + 4 * tid;
    out[0] = O.x * inv;
    out[1] = O.y * inv;
    out[2] = O.z * inv;
    out[3] = O.w * inv;
  }
}

// ---- host --------------------------------------------------------------------------------------

// Resident split-kernel blocks per SM and the SM count, per (device, head_dim), cached: the
// carveout is set to the largest shared-memory share first (4 x 48 KB on sm_90; the default
// carveout may give fewer blocks). Called before any capture by the engine's workspace sizing.
struct DecodeDevice {
  int n_sms = 0;
  int blocks_per_sm = 0;
};
DecodeDevice decode_device(int head_dim) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, DecodeDevice> cache;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({dev, head_dim});
  if (it != cache.end()) return it->second;
  DecodeDevice info;
  info.n_sms = device_info().sm_count;
  auto query = [&](auto kernel) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    int(cudaSharedmemCarveoutMaxShared)));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&info.blocks_per_sm, kernel, 32, 0));
  };
  switch (head_dim) {
    case 64: query(attention_decode_split_kernel<64>); break;
    case 128: query(attention_decode_split_kernel<128>); break;
    case 256: query(attention_decode_split_kernel<256>); break;
    default: info.blocks_per_sm = 4; break;  // unsupported: launch_attention rejects it
  }
  info.blocks_per_sm = std::max(1, info.blocks_per_sm);
  cache.emplace(std::make_pair(dev, head_dim), info);
  return info;
}

// Split plan from host-side bounds only (the same at capture and at replay; the device cuts the
// real lengths, see seq_split). n_splits = floor(resident blocks / base blocks), at least 1, at
// most ceil(keys / kDecMinChunk): one full wave of equal splits when every sequence is at the
// bound. Rounding down, not up: ceil(528 / 64) = 9 splits of 8 x 4096 keys would leave 48 blocks
// for a second wave (a tail of ~30% of the time); floor gives 8 x 64 = 512 blocks.
// Worked examples on the H200 (132 SMs x 4 blocks = 528), D 128, 32/8 heads:
//   1 seq x 32768: base 8 -> 66 splits; the device cuts 32768 keys into chunks of
//     round_up(497, 32) = 512: 64 active splits, 512 blocks of 256 KB of K/V each.
//   8 seqs x 4096: base 64 -> 8 splits of 512 keys, 512 blocks.
//   32 seqs x 4096: base 256 -> 2 splits of 2048 keys, 512 blocks of 1 MB.
//   1 seq at 1000 keys under a 32768 bound: 66 splits planned, chunks of max(64, 32) keys:
//     16 active per kv head, 128 blocks.
struct DecodePlan {
  int n_splits = 1, n_head_groups = 1, heads_per_group = 1, quantum = 32;
};
DecodePlan plan_decode(const AttentionParams& p) {
  DecodePlan pl;
  const int g = p.n_head / p.n_head_kv;
  pl.n_head_groups = (g + kDecMaxHeads - 1) / kDecMaxHeads;
  pl.heads_per_group = (g + pl.n_head_groups - 1) / pl.n_head_groups;
  pl.quantum = p.head_dim > 0 ? std::max(1, kDecTileElems / p.head_dim) : 32;
  const DecodeDevice dev = decode_device(p.head_dim);
  const int64_t base = int64_t(p.n_seqs) * p.n_head_kv * pl.n_head_groups;
  int64_t keys = std::max(1, p.max_kv_len);
  if (p.sliding_window > 0) keys = std::min<int64_t>(keys, p.sliding_window);
  int64_t want = int64_t(dev.n_sms) * dev.blocks_per_sm / std::max<int64_t>(1, base);
  want = std::min(want, (keys + kDecMinChunk - 1) / kDecMinChunk);
  pl.n_splits = int(std::max<int64_t>(1, want));
  return pl;
}

}  // namespace

size_t attention_decode_workspace_bytes(const AttentionParams& p) {
  if (p.max_q_len > 1 || p.n_seqs <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return 0;
  // n_splits only grows with max_kv_len, so the plan at the bound covers every shorter bound.
  const DecodePlan pl = plan_decode(p);
  if (pl.n_splits <= 1) return 0;
  return size_t(p.n_seqs) * p.n_head * pl.n_splits * (p.head_dim + 2) * sizeof(float);
}

void launch_attention_decode(const AttentionParams& p, float scale, cudaStream_t stream) {
  FATHOM_CHECK(p.n_seqs <= 65535 && p.n_head_kv <= 65535, "attention decode: ", p.n_seqs, " sequences / ",
               p.n_head_kv, " kv heads exceed the grid");
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.q) % 8 == 0 && reinterpret_cast<uintptr_t>(p.out) % 8 == 0,
               "attention decode: q and out must be 8-byte aligned");
  const DecodePlan pl = plan_decode(p);
  DecodeArgs a{};
  a.p = p;
  a.qscale = p.softcap > 0.0f ? scale : scale * kDecLog2e;
  a.n_splits = pl.n_splits;
  a.quantum = pl.quantum;
  a.n_head_groups = pl.n_head_groups;
  a.heads_per_group = pl.heads_per_group;
  a.bs_shift = -1;
  for (int s = 0; s < 31; ++s)
    if ((1 << s) == p.block_size) a.bs_shift = s;
  const size_t parts_bytes = size_t(p.n_seqs) * p.n_head * pl.n_splits * (p.head_dim + 2) * sizeof(float);
  if (pl.n_splits > 1) {
    FATHOM_CHECK(p.workspace && p.workspace_bytes >= parts_bytes, "attention: decode workspace of ",
                 p.workspace_bytes, " bytes, ", parts_bytes, " needed (attention_workspace_bytes)");
    FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.workspace) % 16 == 0,
                 "attention: decode workspace is not 16-byte aligned");
  }

  // Cost hints from the host-side bounds (every sequence counted at max_kv_len keys, at most
  // sliding_window): K/V fp16 once per kv head, q read and out written in fp32, or instead of out
  // the partials (D + 2 floats per (seq, head, split)); QK^T and PV are 2 D flops each per
  // (key, query head) -- the useful flops, not the padded tensor-core work.
  const double D = double(p.head_dim);
  const double keys = double(p.sliding_window > 0 ? std::min(p.max_kv_len, p.sliding_window) : p.max_kv_len);
  const double kv_bytes = double(p.n_seqs) * p.n_head_kv * keys * D * 4.0;
  const double q_bytes = double(p.n_tokens) * p.n_head * D * 4.0;
  const double parts = double(parts_bytes);
  const dim3 grid(unsigned(pl.n_splits), unsigned(p.n_head_kv * pl.n_head_groups), unsigned(p.n_seqs));
  launch_cost_hint(kv_bytes + q_bytes + (pl.n_splits > 1 ? parts : q_bytes),
                   double(p.n_seqs) * p.n_head * keys * 4.0 * D);
  switch (p.head_dim) {
    case 64: launch_kernel(attention_decode_split_kernel<64>, grid, dim3(32), 0, stream, a); break;
    case 128: launch_kernel(attention_decode_split_kernel<128>, grid, dim3(32), 0, stream, a); break;
    default: launch_kernel(attention_decode_split_kernel<256>, grid, dim3(32), 0, stream, a); break;
  }
  if (pl.n_splits > 1) {
    // Reads every partial, writes out; 2 flops per partial element plus the weights.
    launch_cost_hint(parts + q_bytes, double(p.n_seqs) * p.n_head * pl.n_splits * (2.0 * D + 4.0));
    launch_kernel(attention_decode_merge_kernel, dim3(unsigned(p.n_head), unsigned(p.n_seqs)),
                  dim3(kMergeThreads), size_t(pl.n_splits) * sizeof(float), stream, a);
  }
}

}  // namespace fathom::cuda

// Tensor-core prefill attention over the paged fp16 KV cache (FlashAttention-2 style; layout and
// masking rules: ops.cuh; dispatch: launch_attention in attention.cu).
//
// One block = ROWS = 16 * WARPS consecutive queries of ONE (sequence, query head); warp w owns
// rows 16w .. 16w+15. WARPS = 8 by default at D 128 / 256 (128 rows: half the L2 -> shared K/V
// traffic per flop of 64 rows; measured 6-15% faster than 4 warps), 4 at D 64 (3 blocks per SM:
// 17% faster than 8 warps there). Query tiles are counted from the END of each sequence's query run (tile 0
// holds its last ROWS queries, the partial tile is the first one), and tile 0 of every sequence and
// head is launched first (grid z), so the heaviest causal tiles start first. GQA: the block reads
// kv head h / (n_head / n_head_kv); blocks of the heads of one kv head are adjacent in grid x, so
// their K/V re-reads hit L2 (no expansion in memory).
//
// Per block:
//   - Q (fp32) is scaled by scale * log2(e) (exp2 softmax; by scale alone with softcap, whose
//     tanh needs natural units), rounded to fp16 once into shared memory; D <= 128 keeps it as
//     mma A fragments in registers for the whole loop, D = 256 re-reads them with ldmatrix each
//     key tile (registers: O alone is 128 floats per thread there).
//   - keys are walked in tiles of KT, aligned to END at the block's last visible key (so a causal
//     block whose queries are consecutive positions has one diagonal tile), from the diagonal
//     backwards; only tiles that hold a visible key for some row are visited. K/V tiles are copied
//     from the cache with 16-byte cp.async (one page lookup per key row, any block_size), zero
//     filled outside [first visible key, kv_len), double buffered: tile i+1 is in flight while
//     tile i is multiplied.
//   - S = Q K^T: mma.sync m16n8k16 (fp16 x fp16 -> fp32), K fragments by ldmatrix from [key][d]
//     rows (K^T's column-major layout, no transpose). Each warp decides per tile, from its rows'
//     visible ranges, whether the tile is fully visible (no mask), partly visible (per-element
//     mask) or invisible (skipped; the warp still joins the barriers).
//   - online softmax in fp32 registers: each thread holds 2 rows (lane/4 and lane/4 + 8) x
//     2 keys per n-tile; row max by two quad shuffles, the row sum kept per thread and reduced
//     once at the end; O rescaled by exp2(m_old - m_new).
//   - O += P V: the S accumulator of two adjacent 8-key n-tiles IS the A fragment of a 16-key
//     k-step once rounded to fp16 (no shuffle); V fragments by ldmatrix.trans from [key][d] rows.
//   - one fp32 write of O / l at the end (l = 0: zeros).
// Shared rows are padded by 16 bytes (D + 8 halves): the 8 row addresses of one ldmatrix 8x8
// matrix then fall in 8 different 16-byte bank groups.
//
// PDL: griddepcontrol.wait first (q, the cache, kv_len come from earlier kernels); dependents are
// released after the main loop (a multi-wave kernel: they would hold SM slots otherwise).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"
#include "cuda/ptx.cuh"

namespace fathom::cuda {

// Called by launch_attention (attention.cu) for max_q_len > 1. variant: 0 default (per head_dim,
// below), 1 / 2 the 4-warp alternatives, 3 8 warps. bytes / flops: the cost hint for fathom profile.
void launch_attention_prefill_tc(const AttentionParams& p, float scale, int variant, double bytes,
                                 double flops, cudaStream_t stream);

namespace {

constexpr float kLog2eTc = 1.4426950408889634f;

struct PrefillTcArgs {
  AttentionParams p;
  float qscale;    // scale * log2(e), or scale with softcap
  float softcap;   // 0 = off
  int32_t bs_shift;  // log2(block_size) when it is a power of two, else -1
};

// smem_u32, cp_async16(_zfill), cp_async_commit / wait, ldsm_x4(_trans): ptx.cuh.

// c (16x8 fp32) += a (16x16 fp16, row) * b (16x8 fp16, col).
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x on the MUFU unit, subnormal results flushed to 0 (exp2f adds range fix-ups around it); -inf
// gives 0. A weight under 2^-126 of the row max would round to 0 in fp16 for P V anyway.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo: the lower column
  return *reinterpret_cast<const uint32_t*>(&h);
}

// WARPS warps x 16 query rows; KT keys per tile; QREG: Q fragments live in registers.
template <int D, int WARPS, int KT, bool QREG>
struct TcCfg {
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kRows = WARPS * 16;
  static constexpr int kStride = D + 8;  // halves per shared row
  static constexpr int kTileHalves = KT * kStride;
  // Stages: [K0][V0][K1][V1]; Q after them, or (QREG) over K1/V1 before tile 1 is loaded.
  static constexpr int kQOffset = QREG ? 2 * kTileHalves : 4 * kTileHalves;
  static constexpr size_t kSmemBytes =
      size_t(QREG ? 4 * kTileHalves : 4 * kTileHalves + kRows * kStride) * sizeof(__half);
  static_assert(!QREG || kRows * kStride <= 2 * kTileHalves, "Q does not fit over stage 1");
  static_assert(kThreads % (D / 8) == 0 && KT % (kThreads / (D / 8)) == 0, "tile copy shape");
  static_assert(KT % 16 == 0 && D % 16 == 0, "mma shape");
};

template <int D, int WARPS, int KT, bool QREG, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB)
    attention_prefill_tc_kernel(const __grid_constant__ PrefillTcArgs a) {
  using C = TcCfg<D, WARPS, KT, QREG>;
  constexpr int NT = KT / 8;    // 8-key n-tiles of S
  constexpr int DT = D / 8;     // 8-dim n-tiles of O
  constexpr int DK = D / 16;    // 16-dim k-steps of Q K^T
  constexpr int CPR = D / 8;    // 16-byte chunks per K/V row
  constexpr int RPP = C::kThreads / CPR;  // rows per copy pass
  extern __shared__ __align__(16) unsigned char tc_smem_raw[];
  __half* smem = reinterpret_cast<__half*>(tc_smem_raw);
  __shared__ int s_ulo[WARPS], s_uhi[WARPS];
  pdl_wait();

  const AttentionParams& p = a.p;
  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int qt = blockIdx.z;  // query tile counted from the end of the sequence's queries
  const int q_begin = p.q_seq_start[seq];
  const int q_len = p.q_seq_start[seq + 1] - q_begin;
  if (qt * C::kRows >= q_len) {
    pdl_trigger();
    return;  // block-uniform
  }
  const int row0 = q_len - (qt + 1) * C::kRows;  // query index of block row 0 (may be < 0)
  const int kvl = p.kv_len[seq];
  const int kvh = head / (p.n_head / p.n_head_kv);
  const int32_t* bt = p.block_table + int64_t(seq) * p.max_blocks_per_seq;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;

  // This thread's two rows (g and g + 8 of its warp): visible key range [lo, hi), empty for
  // padding rows.
  int rlo[2], rhi[2], rtok[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int i = row0 + warp * 16 + g + 8 * e;
    rlo[e] = 0;
    rhi[e] = 0;
    rtok[e] = -1;
    if (i >= 0) {
      const int t = q_begin + i;
      const int qp = p.q_pos[t];
      rtok[e] = t;
      rhi[e] = p.causal ? min(kvl, qp + 1) : kvl;
      rlo[e] = p.sliding_window > 0 ? max(0, qp - p.sliding_window + 1) : 0;
    }
  }
  // Warp union [ulo, uhi) of the non-empty ranges and intersection [ilo, ihi) of all 16 rows.
  int ulo = INT_MAX, uhi = INT_MIN, ilo = INT_MIN, ihi = INT_MAX;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    if (rhi[e] > rlo[e]) {
      ulo = min(ulo, rlo[e]);
      uhi = max(uhi, rhi[e]);
    }
    ilo = max(ilo, rlo[e]);
    ihi = min(ihi, rhi[e]);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ulo = min(ulo, __shfl_xor_sync(0xffffffffu, ulo, off));
    uhi = max(uhi, __shfl_xor_sync(0xffffffffu, uhi, off));
    ilo = max(ilo, __shfl_xor_sync(0xffffffffu, ilo, off));
    ihi = min(ihi, __shfl_xor_sync(0xffffffffu, ihi, off));
  }
  if (lane == 0) {
    s_ulo[warp] = ulo;
    s_uhi[warp] = uhi;
  }
  __syncthreads();
  int blo = INT_MAX, bhi = INT_MIN;
#pragma unroll
  for (int w = 0; w < WARPS; ++w) {
    blo = min(blo, s_ulo[w]);
    bhi = max(bhi, s_uhi[w]);
  }
  const int n_tiles = bhi > blo ? (bhi - blo + KT - 1) / KT : 0;

  // Tile i holds keys [bhi - (i + 1) KT, bhi - i KT); rows below blo are zero-filled.
  const __half* kc = static_cast<const __half*>(p.k_cache);
  const __half* vc = static_cast<const __half*>(p.v_cache);
  const int cp_col = (tid % CPR) * 8, cp_row = tid / CPR;
  auto load_tile = [&](int i, int stage) {
    const int j0 = bhi - (i + 1) * KT;
    const uint32_t ks = smem_u32(smem + 2 * stage * C::kTileHalves + cp_row * C::kStride + cp_col);
    const uint32_t vs = ks + C::kTileHalves * uint32_t(sizeof(__half));
#pragma unroll
    for (int r = 0; r < KT; r += RPP) {
      const int j = j0 + cp_row + r;
      const bool ok = j >= blo;  // j < bhi <= kv_len by construction
      int64_t off = 0;
      if (ok) {
        int blk, in;
        if (a.bs_shift >= 0) {
          blk = j >> a.bs_shift;
          in = j & (p.block_size - 1);
        } else {
          blk = j / p.block_size;
          in = j - blk * p.block_size;
        }
        off = ((int64_t(bt[blk]) * p.n_head_kv + kvh) * p.block_size + in) * D + cp_col;
      }
      const uint32_t so = uint32_t(r * C::kStride * sizeof(__half));
      cp_async16_zfill(ks + so, kc + off, ok);
      cp_async16_zfill(vs + so, vc + off, ok);
    }
  };
  if (n_tiles > 0) load_tile(0, 0);
  cp_async_commit();

  // Q -> fp16 (scaled) in shared memory, zeros for padding rows.
  __half* qs = smem + C::kQOffset;
  for (int idx = tid; idx < C::kRows * (D / 4); idx += C::kThreads) {
    const int r = idx / (D / 4), d = (idx % (D / 4)) * 4;
    const int i = row0 + r;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (i >= 0) v = *reinterpret_cast<const float4*>(p.q + (int64_t(q_begin + i) * p.n_head + head) * D + d);
    uint2 h;
    h.x = pack_half2(v.x * a.qscale, v.y * a.qscale);
    h.y = pack_half2(v.z * a.qscale, v.w * a.qscale);
    *reinterpret_cast<uint2*>(qs + r * C::kStride + d) = h;
  }
  __syncthreads();
  // A-fragment ldmatrix address of this lane: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15).
  const uint32_t q_addr = smem_u32(qs + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * C::kStride +
                                   (lane >> 4) * 8);
  uint32_t qf[QREG ? DK : 1][4];
  if constexpr (QREG) {
#pragma unroll
    for (int kk = 0; kk < DK; ++kk)
      ldsm_x4(q_addr + kk * 32, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
    __syncthreads();  // Q's shared copy (over stage 1) is dead before tile 1 lands there
  }

  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  // ldmatrix lane offsets inside a tile (bytes): K (non-trans) matrices (keys 0-7 | 8-15 by
  // lane >> 4) x (d 0-7 | 8-15 by bit 3); V (trans) matrices (keys 0-7 | 8-15 by bit 3) x
  // (d 0-7 | 8-15 by lane >> 4).
  const uint32_t k_lane = uint32_t(((lane & 7) + (lane >> 4) * 8) * C::kStride + ((lane >> 3) & 1) * 8) * 2;
  const uint32_t v_lane = uint32_t(((lane & 7) + ((lane >> 3) & 1) * 8) * C::kStride + (lane >> 4) * 8) * 2;
  const uint32_t smem_base = smem_u32(smem);

  for (int i = 0; i < n_tiles; ++i) {
    if (i + 1 < n_tiles) load_tile(i + 1, (i + 1) & 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int j0 = bhi - (i + 1) * KT;
    if (j0 < uhi && j0 + KT > ulo) {  // warp-uniform: some row of this warp sees a key here
      const uint32_t kt = smem_base + uint32_t(2 * (i & 1) * C::kTileHalves) * 2;
      const uint32_t vt = kt + uint32_t(C::kTileHalves) * 2;
      float s[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < DK; ++kk) {
        uint32_t qa[4];
        if constexpr (QREG) {
          qa[0] = qf[kk][0];
          qa[1] = qf[kk][1];
          qa[2] = qf[kk][2];
          qa[3] = qf[kk][3];
        } else {
          ldsm_x4(q_addr + kk * 32, qa[0], qa[1], qa[2], qa[3]);
        }
#pragma unroll
        for (int n2 = 0; n2 < NT / 2; ++n2) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4(kt + k_lane + uint32_t(n2 * 16 * C::kStride + kk * 16) * 2, b0, b1, b2, b3);
          mma16816(s[2 * n2], qa, b0, b1);
          mma16816(s[2 * n2 + 1], qa, b2, b3);
        }
      }
      if (a.softcap > 0.0f) {
        const float cap = a.softcap, inv = 1.0f / a.softcap;
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[n][e] = cap * tanhf(s[n][e] * inv) * kLog2eTc;
      }
      if (!(j0 >= ilo && j0 + KT <= ihi)) {  // warp-uniform: some key of the tile is masked
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int j = j0 + n * 8 + 2 * t4 + (e & 1);
            const int r = e >> 1;
            if (j < rlo[r] || j >= rhi[r]) s[n][e] = -INFINITY;
          }
      }
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        mx[0] = fmaxf(mx[0], fmaxf(s[n][0], s[n][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[n][2], s[n][3]));
      }
      float corr[2], mref[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        mref[r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // nothing visible yet: p = 0, no NaN
        corr[r] = fast_exp2(m[r] - mref[r]);
        m[r] = mx[r];
        l[r] *= corr[r];
      }
#pragma unroll
      for (int d = 0; d < DT; ++d) {
        o[d][0] *= corr[0];
        o[d][1] *= corr[0];
        o[d][2] *= corr[1];
        o[d][3] *= corr[1];
      }
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        s[n][0] = fast_exp2(s[n][0] - mref[0]);
        s[n][1] = fast_exp2(s[n][1] - mref[0]);
        s[n][2] = fast_exp2(s[n][2] - mref[1]);
        s[n][3] = fast_exp2(s[n][3] - mref[1]);
        l[0] += s[n][0] + s[n][1];
        l[1] += s[n][2] + s[n][3];
      }
#pragma unroll
      for (int kk = 0; kk < KT / 16; ++kk) {
        uint32_t pa[4];
        pa[0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int d2 = 0; d2 < D / 16; ++d2) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4_trans(vt + v_lane + uint32_t(kk * 16 * C::kStride + d2 * 16) * 2, b0, b1, b2, b3);
          mma16816(o[2 * d2], pa, b0, b1);
          mma16816(o[2 * d2 + 1], pa, b2, b3);
        }
      }
    }
    __syncthreads();  // stage (i & 1) is refilled by the next iteration's copy of tile i + 2
  }
  pdl_trigger();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rtok[r] < 0) continue;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    float* out = p.out + (int64_t(rtok[r]) * p.n_head + head) * D + 2 * t4;
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<float2*>(out + d * 8) = make_float2(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
  }
}

template <int D, int WARPS, int KT, bool QREG, int MINB = 8 / WARPS>
void launch_tc(const PrefillTcArgs& a, double bytes, double flops, cudaStream_t stream) {
  using C = TcCfg<D, WARPS, KT, QREG>;
  auto kernel = attention_prefill_tc_kernel<D, WARPS, KT, QREG, MINB>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytes)));
  const AttentionParams& p = a.p;
  const dim3 grid(unsigned(p.n_head), unsigned(p.n_seqs), unsigned((p.max_q_len + C::kRows - 1) / C::kRows));
  launch_cost_hint(bytes, flops);
  launch_kernel(kernel, grid, dim3(C::kThreads), C::kSmemBytes, stream, a);
}

}  // namespace

void launch_attention_prefill_tc(const AttentionParams& p, float scale, int variant, double bytes,
                                 double flops, cudaStream_t stream) {
  FATHOM_CHECK(p.n_seqs <= 65535 && (p.max_q_len + 15) / 16 <= 65535, "attention prefill: ",
               p.n_seqs, " sequences / max_q_len ", p.max_q_len, " exceed the grid");
  PrefillTcArgs a{};
  a.p = p;
  a.softcap = p.softcap;
  a.qscale = p.softcap > 0.0f ? scale : scale * kLog2eTc;
  a.bs_shift = -1;
  for (int s = 0; s < 31; ++s)
    if ((1 << s) == p.block_size) a.bs_shift = s;
  // variant 0 (default): 8 warps (128 query rows, 1 block per SM) at D 128 / 256, 4 warps (64
  // rows, 3 blocks per SM) at D 64; 1: 4 warps, 3 blocks per SM at D <= 128 (168-register cap), 2
  // at D = 256; 2: 4 warps, 2 blocks per SM; 3: 8 warps. H200, causal, TFLOP/s (BenchPrefill):
  //   D 128, 32/8 heads, 4k / 8k / 16k: 8 warps 226 / 245 / 252, 4 warps x 3 206 / 218 / 219,
  //   4 warps x 2 208 / 221 / 228; last 512-query chunk of 4096: 212 / 155 / 200;
  //   D 64, 64/8 heads, 4k: 188 / 220 / 181;  D 256, 16/8 heads, 4k: 203 / 191 / 192.
  const bool w8 = variant == 3 || (variant == 0 && p.head_dim != 64);
  switch (p.head_dim) {
    case 64:
      if (w8) launch_tc<64, 8, 64, true>(a, bytes, flops, stream);
      else if (variant == 2) launch_tc<64, 4, 64, true, 2>(a, bytes, flops, stream);
      else launch_tc<64, 4, 64, true, 3>(a, bytes, flops, stream);
      break;
    case 128:
      if (w8) launch_tc<128, 8, 64, true>(a, bytes, flops, stream);
      else if (variant == 2) launch_tc<128, 4, 64, true, 2>(a, bytes, flops, stream);
      else launch_tc<128, 4, 64, true, 3>(a, bytes, flops, stream);
      break;
    default:
      if (w8) launch_tc<256, 8, 32, false>(a, bytes, flops, stream);
      else launch_tc<256, 4, 32, false, 2>(a, bytes, flops, stream);
      break;
  }
}

}  // namespace fathom::cuda

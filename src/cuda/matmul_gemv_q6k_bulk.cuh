// Q6_K, one token: y = x W^T for a batch-1 decode GEMV whose weights are Q6_K (210-byte
// super-blocks of 256 weights: ql[128] low nibbles, qh[64] high bit pairs, int8 scales[16], fp16 d;
// w = d sc (q - 32)), streamed through per-warp shared-memory rings filled by bulk async copies (the
// sm_90 copy engine), x as the two int8 planes every int8 GEMV uses. The default for Q6_K at one
// token on sm_90 code when cols % 2048 == 0 (launch_gemv_q8; FATHOM_GEMV_Q6K=bulk|direct).
// Included by matmul_gemv_q8.cu inside its anonymous namespace, after matmul_gemv_q8_0_one.cuh
// (uses Args, group_rows, one_token_x, one_token_chunk_done, stage_x1_batched, direct_smem_bytes, the
// ptx.cuh helpers). Counts and prediction: docs/perf/q6k_bulk.md.
//
// Why: the register-direct kernel (gemv_q6k_direct_kernel) reads Llama-3-8B's Q6_K ffn_down
// (4096 x 14336, 48.2 MB) in 27.3 us (~1765 GB/s) and the LM head (128256 x 4096, 431 MB) in
// 158.3 us (2723 GB/s), where the read floor is 3.3 us + bytes / 4.6 TB/s = 13.8 / 97.0 us. Its
// loads are synchronous per batch (the warps wait, compute, load again) and each super-block is
// realigned through 17 shuffles per lane and row. Here, as in the Q8_0 kernel, lane 0 of each warp
// keeps D (2 or 3) stages of the warp's rows in flight with one cp.async.bulk per row, and the lanes read
// their bytes from shared memory with no shuffles.
//
// Geometry: 8 super-blocks are 1680 bytes = 105 x 16, so with cols % 2048 == 0 (rows of 1680-byte
// multiples: Llama 4096 / 14336) every row and every 8-super-block chunk starts 16-byte aligned and
// is a whole number of 16-byte pieces. Stage i of a warp = chunk c of group g (two rows of one
// matrix, or gate row g and up row g), one bulk copy per row into ring slot i % D, completion on
// that slot's mbarrier (phase parity (i / D) & 1). No partial chunks exist.
//
// Lanes: lane = 4 j + 2 h + c takes super-block j of the chunk, half h, 16-position half-run c:
// ql bytes A = ql[64 h + 16 c + i] and B = ql[64 h + 32 + 16 c + i], qh bytes qh[32 h + 16 c + i]
// (i < 16): every weight byte of the chunk is read by exactly one lane. The codes are 4 runs k of
// 16 elements 128 h + 32 k + 16 c + i: k = 0 / 2 the low / high nibbles of A with qh bits 0-1 / 4-5,
// k = 1 / 3 those of B with qh bits 2-3 / 6-7; run k's scale is scales[8 h + c + 2 k], its
// 32-element x block 4 h + k. Super-block j starts at 210 j (2 j mod 16): for odd j the lane's runs
// are 2 bytes off a word, so every run is read as 5 aligned words and byte_perm'd with a lane-
// constant selector (0x3210 for even j, 0x5432 for odd). Shared loads: 2-way bank conflicts (the
// 210-byte stride), ~80 wavefronts of weights + 44 of x per stage and warp, well under the issue
// time at the read floor (docs/perf/q6k_bulk.md).
// Code offset -32: each run's x-code sum R = sum(254 q1 + q2) (the rounded x, as the ring and
// direct kernels' dp4a with 0xE0E0E0E0) is computed once per block after staging x and stored as
// -32 R in lane order (q6k_offsets); plane 2's dp4a chain starts from it, so every weight's whole
// value (q - 32) meets the rounded x and the error bound is the symmetric types' (matmul_gemv_q8.cuh).
// Per run: t = 254 d1 + d2 (|t| <= 16 * 32 * 32385), m = sc t (|m| <= 2.13e9 < 2^31), then
// v += u_k float(m); acc += d v.
constexpr int kQ6Sb = 8;                       // super-blocks per row per stage
constexpr int kQ6RowBytes = kQ6Sb * 210;       // 1680 = 105 x 16
constexpr int kQ6Slot = kR * kQ6RowBytes;      // 3360

template <int D>
__host__ __device__ constexpr size_t q6k_ring_bytes() { return size_t(kWarps) * D * kQ6Slot; }

// Shared memory after the rings: one_token_x (x planes, (u, sum), part), then kWarps x D barriers,
// then the per-run offsets (cols / 16 ints).
template <int D>
size_t q6k_smem_bytes(int64_t cols) {
  return q6k_ring_bytes<D>() + direct_smem_bytes(cols) + size_t(kWarps) * D * sizeof(uint64_t) +
         size_t(cols / 16) * sizeof(int);
}

// After x is staged (and a __syncthreads): -32 x the rounded-x code sum of every 16-element run,
// at run (sb j, scale index s = 8 h + 2 k + c) -> 16 j + 4 (2 h + c) + k, so a lane's 4 runs are
// one 16-byte load.
__device__ __forceinline__ void q6k_offsets(const int8_t* xq, int xq_cs, int cols, int* off) {
  constexpr uint32_t kOnes = 0x01010101u;
  for (int q = threadIdx.x; q < cols / 16; q += kThreads) {
    const uint4 a = *reinterpret_cast<const uint4*>(xq + xpad(16 * q));
    const uint4 b = *reinterpret_cast<const uint4*>(xq + xq_cs + xpad(16 * q));
    const int s1 = dp4a(kOnes, a.w, dp4a(kOnes, a.z, dp4a(kOnes, a.y, dp4a(kOnes, a.x, 0))));
    const int s2 = dp4a(kOnes, b.w, dp4a(kOnes, b.z, dp4a(kOnes, b.y, dp4a(kOnes, b.x, 0))));
    const int s = q & 15, h = s >> 3, k = (s >> 1) & 3, c = s & 1;
    off[(q & ~15) + 4 * (2 * h + c) + k] = -32 * (kPlaneScale * s1 + s2);
  }
}

// Lane 0: request chunk c of the rows at w[r] that exist (ok[r]) into slot (shared address) with
// its barrier.
__device__ __forceinline__ void q6k_issue(const uint8_t* const (&w)[kR], const bool (&ok)[kR], int c, uint32_t slot,
                                          uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr uint32_t bytes = kQ6RowBytes;
  mbar_arrive_expect_tx(bar, bytes * (ok[0] ? 1u : 0u) + bytes * (ok[1] ? 1u : 0u));
#pragma unroll
  for (int r = 0; r < kR; ++r)
    if (ok[r]) bulk_g2s(slot + uint32_t(r * kQ6RowBytes), w[r] + int64_t(c) * kQ6RowBytes, bytes, bar);
#endif
}

// (n & 0x0F0F0F0F) | (t & 0xF0F0F0F0) as one LOP3 (lut 0xE4: a = n, b = t, c = the mask).
__device__ __forceinline__ uint32_t q6k_merge(uint32_t n, uint32_t t) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(r) : "r"(n), "r"(t), "n"(0x0F0F0F0F));
  return r;
}

// t << 4 for q6k_merge as one funnel shift of t (from `t << 4` ptxas re-derives it from qh as a
// shift and a mask): a rotate, whose bits wrapped into bits 0-3 are dropped by the merge's mask.
__device__ __forceinline__ uint32_t q6k_shl4(uint32_t t) {
  uint32_t r;
  asm("shf.l.wrap.b32 %0, %1, %1, 4;" : "=r"(r) : "r"(t));
  return r;
}

// One lane's bytes of one row in a slot: 3 runs of 16 bytes (A, B, qh) as 5 aligned words each,
// 4 scales (sign-extended), d.
struct Q6Regs {
  uint32_t a[5], b[5], h[5];
  int sc[4];
  uint32_t d;
};

// Shared loads as volatile asm with a memory clobber: kept after the slot's mbarrier wait and before
// the __syncwarp / fence.proxy.async that precede the slot's refill.
__device__ __forceinline__ uint32_t q6k_lds(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ int q6k_lds_s8(uint32_t addr) {
  int v;
  asm volatile("ld.shared.s8 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ uint32_t q6k_lds_u16(uint32_t addr) {
  unsigned short v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(addr) : "memory");
  return v;
}

// Shared addresses of a lane's bytes in the row at `row` (a slot's row start): the word floor of
// run A (ql[64 h + 16 c]; run B is 32 bytes later), of the qh run, the first scale, d.
struct Q6Lane {
  uint32_t a, h, s, d;
};

__device__ __forceinline__ void q6k_load(uint32_t row, const Q6Lane& l, Q6Regs& o) {
  const uint32_t pa = row + l.a, ph = row + l.h, ps = row + l.s;
#pragma unroll
  for (int k = 0; k < 5; ++k) {
    o.a[k] = q6k_lds(pa + 4 * k);
    o.b[k] = q6k_lds(pa + 32 + 4 * k);
    o.h[k] = q6k_lds(ph + 4 * k);
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) o.sc[k] = q6k_lds_s8(ps + 2 * k);
  o.d = q6k_lds_u16(row + l.d);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2) gemv_q6k_bulk_kernel(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ uint4 q8_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(q8_smem4);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  uint8_t* ring = smem + size_t(warp) * D * kQ6Slot;
  const OneTokenX ox = one_token_x(smem + q6k_ring_bytes<D>(), cols);  // x after the rings
  uint64_t* bars_all = reinterpret_cast<uint64_t*>(ox.part + kWarps * kR);
  uint64_t* bars = bars_all + warp * D;
  int* const offs = reinterpret_cast<int*>(bars_all + kWarps * D);

  const int n_chunks = cols / 2048;
  // Warp-major group order (as launch_q80_one_token): with fewer groups than warp slots every
  // block still gets work.
  const int64_t gstep = int64_t(gridDim.x) * kWarps;
  const int64_t g0 = int64_t(warp) * gridDim.x + blockIdx.x;
  const uint32_t ring_s = smem_u32(ring), bar_s = smem_u32(bars);

  // Producer cursor (lane 0): the next stage to request; its group's rows, looked up once per group.
  RingCursor pcur(g0, gstep, a.n_groups, n_chunks);
  const int64_t n_st = pcur.n_st;  // this warp's stages
  const uint8_t* pw[kR];
  bool pok[kR];
  auto issue_next = [&](uint32_t slot) {
    if (pcur.c == 0) {
      const uint8_t* end[kR];
      group_rows(a, pcur.g, pw, pok, end);
    }
    q6k_issue(pw, pok, pcur.c, ring_s + slot * uint32_t(kQ6Slot), bar_s + 8u * slot);
    pcur.advance();
  };
  if (lane == 0) ring_start<D>(bar_s, pcur, issue_next);
  __syncwarp();
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  stage_x1_batched<kStageXB>(a, ox.xq, ox.xq_cs, ox.xd, ox.part);
  __syncthreads();
  q6k_offsets(ox.xq, ox.xq_cs, cols, offs);
  __syncthreads();

  const int8_t* const xq = ox.xq;
  const int xq_cs = ox.xq_cs;
  const float2* const xd = ox.xd;
  const int j = lane >> 2, h = (lane >> 1) & 1, c = lane & 1;
  const int hc = 8 * h + c;
  // Lane-constant offsets inside a row's 1680 bytes: the super-block, the word floor of run A
  // (ql[64 h + 16 c]) and of the qh run (128 + 32 h + 16 c), the realigning selector.
  const int sb_off = 210 * j;
  const int fl = (sb_off & 3);  // 0 or 2
  const uint32_t sel = fl ? 0x5432u : 0x3210u;
  Q6Lane ln{uint32_t(sb_off - fl + 64 * h + 16 * c), uint32_t(sb_off - fl + 128 + 32 * h + 16 * c),
            uint32_t(sb_off + 192 + hc), uint32_t(sb_off + 208)};
  // Opaque to ptxas, so the loop keeps them in registers instead of recomputing them from the
  // thread index at every stage (~30 instructions per stage otherwise).
  asm volatile("" : "+r"(ln.a), "+r"(ln.h), "+r"(ln.s), "+r"(ln.d));
  const int x_in = 160 * h + 16 * c;  // xpad offset of the lane's first x element in its super-block
  float acc[kR] = {0.0f, 0.0f};
  int64_t g = g0;
  int ch = 0;
  int row1_off = kQ6RowBytes;  // a missing second row (odd row count) reads row 0's bytes, never stored
  int slot = 0;
  uint32_t slot_s = ring_s, phase = 0;
  for (int64_t i = 0; i < n_st; ++i) {
    if (ch == 0) {
      const uint8_t* w[kR];
      bool ok[kR];
      const uint8_t* end[kR];
      group_rows(a, g, w, ok, end);
      row1_off = ok[1] ? kQ6RowBytes : 0;
    }
    mbar_wait(bar_s + 8u * uint32_t(slot), phase);
    // The slot's bytes into registers first, then the slot is refilled while the math runs.
    Q6Regs R[kR];
    q6k_load(slot_s, ln, R[0]);
    q6k_load(slot_s + uint32_t(row1_off), ln, R[1]);
    __syncwarp();  // every lane has read the slot
    if (lane == 0 && pcur.issued < n_st) {
      fence_proxy_async_smem();  // the slot's generic-proxy reads before the async-proxy refill
      issue_next(uint32_t(slot));
    }
    const int jabs = ch * kQ6Sb + j;  // super-block in the row
    // x of run k: elements 256 jabs + 128 h + 16 c + 32 k, i.e. xpad offset 320 jabs + x_in + (0, 32,
    // 80, 112)[k] (runs 2, 3 are in the next 64-element run).
    const int8_t* xb = xq + 320 * jabs + x_in;
    uint4 xv[2][4];  // [plane][run]
#pragma unroll
    for (int pl = 0; pl < 2; ++pl)
#pragma unroll
      for (int k = 0; k < 4; ++k)
        xv[pl][k] = *reinterpret_cast<const uint4*>(xb + pl * xq_cs + (k < 2 ? 32 * k : 80 + 32 * (k - 2)));
    const float4 u01 = *reinterpret_cast<const float4*>(xd + 8 * jabs + 4 * h);      // (u, sum) of runs 0, 1
    const float4 u23 = *reinterpret_cast<const float4*>(xd + 8 * jabs + 4 * h + 2);  // of runs 2, 3
    const int4 off4 = *reinterpret_cast<const int4*>(offs + 16 * jabs + 4 * (2 * h + c));
    const float u[4] = {u01.x, u01.z, u23.x, u23.z};
    const int off[4] = {off4.x, off4.y, off4.z, off4.w};
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      uint32_t qa[4], qb[4], qh[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        qa[k] = __byte_perm(R[r].a[k], R[r].a[k + 1], sel);
        qb[k] = __byte_perm(R[r].b[k], R[r].b[k + 1], sel);
        qh[k] = __byte_perm(R[r].h[k], R[r].h[k + 1], sel);
      }
      // Code words of the 4 runs: [run][word]. Each is one LOP3 (n & kM4) | (t & ~kM4) of a nibble
      // word n and a word t whose bits 4-5 of every byte are the code's qh pair and bits 6-7 zero:
      // t0 = qh & 0x33 per byte gives runs 2 (as is) and 0 (<< 4), t1 = (qh >> 2) & 0x33 runs 3 and 1.
      // (Inline lop3 / shf: nvcc and ptxas rewrite the C++ form into 2-3 instructions per word.)
      uint32_t q[4][4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t t0 = qh[k] & 0x33333333u, t1 = (qh[k] >> 2) & 0x33333333u;
        q[0][k] = q6k_merge(qa[k], q6k_shl4(t0));
        q[1][k] = q6k_merge(qb[k], q6k_shl4(t1));
        q[2][k] = q6k_merge(qa[k] >> 4, t0);
        q[3][k] = q6k_merge(qb[k] >> 4, t1);
      }
      float v = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint4 x1 = xv[0][k], x2 = xv[1][k];
        const int d1 = dp4a(q[k][3], x1.w, dp4a(q[k][2], x1.z, dp4a(q[k][1], x1.y, dp4a(q[k][0], x1.x, 0))));
        const int d2 = dp4a(q[k][3], x2.w, dp4a(q[k][2], x2.z, dp4a(q[k][1], x2.y, dp4a(q[k][0], x2.x, off[k]))));
        const int t = kPlaneScale * d1 + d2;  // sum (q - 32)(254 x1 + x2): |t| <= 16 * 32 * 32385
        v = fmaf(u[k], float(R[r].sc[k] * t), v);  // |sc t| <= 128 * 16.6M < 2^31
      }
      acc[r] = fmaf(half_lo(R[r].d), v, acc[r]);
    }
    slot_s += kQ6Slot;
    if (++slot == D) {
      slot = 0;
      slot_s = ring_s;
      phase ^= 1u;
    }
    one_token_chunk_done(a, ch, n_chunks, g, gstep, acc, lane);
  }
  pdl_trigger();
#else
  __trap();  // routed here only where sm90_code_ok() (launch_gemv_q8)
#endif
}

// Ring depth: 3 slots per warp (80 KB per block) where two blocks still fit per SM beside x
// (cols 2048 .. ~8192), else 2 (cols 14336: x planes are 35 KB). One persistent wave, at least one
// group per block (as launch_q80_one_token).
template <int D>
void launch_q6k_bulk_d(const Args& a, cudaStream_t stream) {
  launch_one_token(gemv_q6k_bulk_kernel<D>, q6k_smem_bytes<D>(a.cols), a, stream, /*warp_major=*/true);
}

// Two blocks per SM with 3 slots (the occupancy query counts the per-block reserve).
bool q6k_three_slots(int64_t cols) {
  const size_t smem = q6k_smem_bytes<3>(cols);
  return smem <= size_t(device_info().max_smem_optin) &&
         blocks_per_sm(reinterpret_cast<const void*>(gemv_q6k_bulk_kernel<3>), kThreads, smem) >= 2;
}

bool q6k_bulk_fits(int64_t cols) { return q6k_smem_bytes<2>(cols) <= size_t(device_info().max_smem_optin); }

void launch_q6k_one_token(const Args& a, cudaStream_t stream) {
  if (q6k_three_slots(a.cols)) launch_q6k_bulk_d<3>(a, stream);
  else launch_q6k_bulk_d<2>(a, stream);
}

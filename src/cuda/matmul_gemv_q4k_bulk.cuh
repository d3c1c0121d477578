// Q4_K, one token, weights through per-warp shared-memory rings filled by bulk async copies (the
// sm_90 copy engine); the default there (q4k_kernel() in matmul_gemv_q8.cu). Included by
// matmul_gemv_q8.cu inside its anonymous namespace (uses its Args, group_rows, store_group,
// stage_x, PairBuf, pair_dot).
//
// Alone this kernel is 4-8% slower than the pair kernel (14336 x 4096: 15.48 vs 14.28 us), but in
// the decode step, where the first 4 stages per warp land in shared memory while the previous
// kernel finishes, it ties or wins (bench/device_s13g.sh, H200: llama3-8b Q4_K_M d512 370.6 vs
// 370.3 tok/s, llama3.2-1b 1208.8 vs 1191.4, llama3-8b depth 32768 269.7 vs 262.9).
//
// Why (session 13, docs/perf/NOTES.md): the register-direct kernel reads Q4_K 14336 x 4096
// (33 MB) in 15.9 us, where a plain streaming read of 33 MB takes 10.4 us. Nsight Compute: DRAM
// 36% busy, issue slots 38% busy, 4 warps per scheduler, 48% of cycles with no eligible warp --
// neither the memory nor the issue side is saturated: each warp loads a whole group, waits,
// computes, and only then loads again, and the warps fall into step. Here the bytes a warp will
// need next are always in flight, whatever it computes: lane 0 keeps D stages of the warp's rows
// requested (9216 bytes per warp in both shapes below, ~147 KB per SM), each a cp.async.bulk per
// row that needs no thread to move its bytes, and the first D stages are requested before
// pdl_wait(), during the previous kernel's tail. The arithmetic is the pair kernel's (pair_dot:
// lane l takes sub-block pair l % 4 of super-blocks l / 4, l / 4 + 8, ... of the chunk), reading
// the code bytes and headers from the ring instead of global memory. (The first version used the register-direct
// kernel's arithmetic: 20.5 vs 15.2 us on 14336 x 4096, 10.6M instructions, issue-bound.)
//
// Stage i of a warp = chunk c of group g (its kR rows, super-blocks [SB c, SB c + SB) of each), slot
// i % D, completion on that slot's mbarrier (phase parity (i / D) & 1).
// Two stage shapes (template SB, D; FATHOM_GEMV_Q4K_STAGE=16|8 picks one, q4k_bulk_stage() in
// matmul_gemv_q8.cu): SB = 8 super-blocks per row and stage, D = 4 slots (session 13), or SB = 16,
// D = 2 -- the same ring bytes per warp, half the stages per weight, so half the producer work
// (group_rows + expect_tx + copies, ~100 warp instructions per stage from lane 0, SASS) and half
// the barrier waits and loop overhead per weight; at SB = 16 each lane takes two pairs per row
// (super-blocks sbl and sbl + 8 of the chunk) against the same stage.
template <int SB>
struct BulkShape {
  static constexpr int kRowBytes = SB * 144;       // 1152 / 2304
  static constexpr int kSlot = kR * kRowBytes;     // 2304 / 4608
};
constexpr int kBulkSB = 8;  // the session-13 shape: 8 super-blocks, 4 slots
constexpr int kBulkD = 4;

template <int SB, int D>
__host__ __device__ constexpr size_t bulk_ring_bytes() { return size_t(kWarps) * D * BulkShape<SB>::kSlot; }

// Lane 0: request stage (g, c) into slot (smem address) with its barrier.
template <int SB>
__device__ __forceinline__ void bulk_issue(const Args& a, int64_t g, int c, int n_sb, uint32_t slot, uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint8_t* w[kR];
  bool ok[kR];
  const uint8_t* end[kR];
  group_rows(a, g, w, ok, end);
  const uint32_t bytes = uint32_t(min(SB, n_sb - c * SB)) * 144u;
  mbar_arrive_expect_tx(bar, bytes * (ok[0] ? 1u : 0u) + bytes * (ok[1] ? 1u : 0u));
#pragma unroll
  for (int r = 0; r < kR; ++r)
    if (ok[r]) bulk_g2s(slot + uint32_t(r * BulkShape<SB>::kRowBytes), w[r] + c * BulkShape<SB>::kRowBytes, bytes, bar);
#endif
}

template <int SB, int D>
__global__ void __launch_bounds__(kThreads, 2) gemv_q4k_bulk_kernel(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using S = BulkShape<SB>;
  extern __shared__ uint4 q8_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(q8_smem4);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  uint8_t* ring = smem + size_t(warp) * D * S::kSlot;
  const OneTokenX ox = one_token_x(smem + bulk_ring_bytes<SB, D>(), cols);  // x after the rings
  int8_t* const xq = ox.xq;
  float2* const xd = ox.xd;
  const int xq_cs = ox.xq_cs, xd_cs = ox.xd_cs;
  float* const part = ox.part;
  uint64_t* bars = reinterpret_cast<uint64_t*>(part + kWarps * kR) + warp * D;

  const int n_sb = cols / 256;
  const int n_chunks = (n_sb + SB - 1) / SB;
  const int64_t gstep = int64_t(gridDim.x) * kWarps;
  const int64_t g0 = int64_t(blockIdx.x) * kWarps + warp;
  const uint32_t ring_s = smem_u32(ring), bar_s = smem_u32(bars);

  // Producer cursor (lane 0): the next stage to request.
  RingCursor pcur(g0, gstep, a.n_groups, n_chunks);
  const int64_t n_st = pcur.n_st;  // this warp's stages
  auto issue_next = [&](uint32_t slot) {
    bulk_issue<SB>(a, pcur.g, pcur.c, n_sb, ring_s + slot * uint32_t(S::kSlot), bar_s + 8u * slot);
    pcur.advance();
  };
  if (lane == 0) ring_start<D>(bar_s, pcur, issue_next);
  __syncwarp();
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  stage_x1_batched<kStageXB>(a, xq, xq_cs, xd, part);
  __syncthreads();

  const XView xv{xq, xq_cs, xq_cs, xd, xd_cs};
  const int p = lane & 3, sbl = lane >> 2;  // pair p of super-blocks sbl, sbl + 8, ... of the chunk
  float acc[kR] = {0.0f, 0.0f};
  int64_t g = g0;
  int c = 0;
  for (int64_t i = 0; i < n_st; ++i) {
    const int slot = int(i % D);
    mbar_wait(bar_s + 8u * slot, uint32_t((i / D) & 1));
    const int nsb = min(SB, n_sb - c * SB);
#pragma unroll
    for (int k = 0; k < SB / 8; ++k) {
      const int sb = sbl + 8 * k;
      if (sb < nsb) {
        const uint8_t* sw = ring + slot * S::kSlot + sb * 144;
        PairBuf b;
#pragma unroll
        for (int r = 0; r < kR; ++r) {  // a row that does not exist reads stale bytes; never stored
          b.h[r] = *reinterpret_cast<const uint4*>(sw + r * S::kRowBytes);
          b.qa[r] = *reinterpret_cast<const uint4*>(sw + r * S::kRowBytes + 16 + 32 * p);
          b.qb[r] = *reinterpret_cast<const uint4*>(sw + r * S::kRowBytes + 32 + 32 * p);
        }
        pair_dot(b, xv, xd, c * SB + sb, p, acc);
      }
    }
    __syncwarp();  // every lane is done with the slot
    if (lane == 0 && pcur.issued < n_st) {
      fence_proxy_async_smem();  // the slot's generic-proxy reads before the async-proxy refill
      issue_next(uint32_t(slot));
    }
    one_token_chunk_done(a, c, n_chunks, g, gstep, acc, lane);
  }
  pdl_trigger();
#else
  __trap();  // routed here only where sm90_code_ok() (launch_gemv_q8)
#endif
}

template <int SB, int D>
size_t bulk_smem_bytes(int64_t cols) {
  return bulk_ring_bytes<SB, D>() + direct_smem_bytes(cols) + size_t(kWarps) * D * sizeof(uint64_t);
}

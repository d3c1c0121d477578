// Q8_0, one token: y = x W^T for a batch-1 decode GEMV whose weights are Q8_0 (34-byte blocks:
// fp16 d, then 32 int8 codes; w = d q), streamed through per-warp shared-memory rings filled by
// bulk async copies (the sm_90 copy engine), x as the two int8 planes every int8 GEMV uses. The
// default for Q8_0 at one token on sm_90 (launch_gemv_q8; FATHOM_GEMV_Q8_0=bulk|ring).
// Included by matmul_gemv_q8.cu inside its anonymous namespace, after matmul_gemv_q4k_bulk.cuh
// (uses Args, group_rows, one_token_x, one_token_chunk_done, direct_smem_bytes, the ptx.cuh helpers).
//
// Bytes: a row of cols weights is 34 cols / 32 bytes (4096 cols: 4352 B; 14336: 15232 B); Llama-3-8B
// ffn gate/up 14336 x 4096 and down 4096 x 14336 are 62.4 MB each, whose measured read floor is
// ~3.3 us + 62.4 MB / 4.6 TB/s = 16.9 us (GpuReadBench, docs/perf/NOTES.md session 13). The
// shared-memory-ring kernel (gemv_q8_kernel) ran 14336 x 4096 in 25.2 us (session 11).
//
// Why this shape (counts in docs/perf/q8_0_one_token.md): per 32 weights Q8_0 needs 16 dp4a (two x
// planes) and one scale, ~4x fewer instructions per byte than Q4_K, so its GEMV is not issue-bound
// the way the Q4_K kernels are (~41 lane instructions per block and row here, ~13% of the issue
// slots at the read floor); what it needs is bytes in flight, which the copy engine supplies with
// one instruction per row and stage. Blocks are only 2-byte aligned, which rules out direct 16-byte
// loads into the lanes that use them (shuffles + realignment cost ~3x the arithmetic); from shared
// memory a lane reads its block pair as 17 aligned 32-bit words, conflict-free (stride 17 words).
//
// Stage i of a warp = chunk c of group g: blocks [64c, 64c + 64) of both rows of the group (two rows
// of one matrix, or gate row g and up row g for the fused GLU), 2176 bytes per row (a multiple of
// 16: needs cols % 256 == 0, which the router checks), in ring slot i % kQ80D, completion on that
// slot's mbarrier (phase parity (i / kQ80D) & 1). Lane l takes blocks 2l, 2l + 1 of the chunk:
// words W0..W16 of the pair (68 bytes from a 4-byte boundary): block A's d is the low half of W0
// and its codes bytes 2..33 (one byte_perm per word), block B's d the high half of W8 and its codes
// W9..W16. x: the 64 elements of the pair are one 80-byte run of each plane (xpad layout), read as
// 8 x 16 bytes and shared by both rows; (u, sum) of both blocks is one float4.
constexpr int kQ80Blocks = 64;                    // blocks per row per stage (32 lanes x a pair)
constexpr int kQ80RowBytes = kQ80Blocks * 34;     // 2176 = 136 x 16
constexpr int kQ80Slot = kR * kQ80RowBytes;       // 4352
constexpr int kQ80D = 2;                          // ring slots per warp: 8.7 KB, 139 KB in flight per SM

__host__ __device__ constexpr size_t q80_ring_bytes() { return size_t(kWarps) * kQ80D * kQ80Slot; }

// Lane 0: request chunk c -- blocks [64c, 64c + 64) of the rows at w[r] that exist (ok[r]) -- into
// slot (shared address) with its barrier. n_blk: blocks per row.
__device__ __forceinline__ void q80_issue(const uint8_t* const (&w)[kR], const bool (&ok)[kR], int c, int n_blk,
                                          uint32_t slot, uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint32_t bytes = uint32_t(min(kQ80Blocks, n_blk - c * kQ80Blocks)) * 34u;
  mbar_arrive_expect_tx(bar, bytes * (ok[0] ? 1u : 0u) + bytes * (ok[1] ? 1u : 0u));
#pragma unroll
  for (int r = 0; r < kR; ++r)
    if (ok[r]) bulk_g2s(slot + uint32_t(r * kQ80RowBytes), w[r] + int64_t(c) * kQ80RowBytes, bytes, bar);
#endif
}

// Eight int8 code words . 32 x codes of one plane (two 16-byte runs).
__device__ __forceinline__ int q80_dot8(const uint32_t* w, uint4 a, uint4 b) {
  int s = __dp4a(int(w[0]), int(a.x), 0);
  s = __dp4a(int(w[1]), int(a.y), s);
  s = __dp4a(int(w[2]), int(a.z), s);
  s = __dp4a(int(w[3]), int(a.w), s);
  s = __dp4a(int(w[4]), int(b.x), s);
  s = __dp4a(int(w[5]), int(b.y), s);
  s = __dp4a(int(w[6]), int(b.z), s);
  return __dp4a(int(w[7]), int(b.w), s);
}

__global__ void __launch_bounds__(kThreads, 2) gemv_q80_bulk_kernel(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ uint4 q8_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(q8_smem4);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols = int(a.cols);
  uint8_t* ring = smem + size_t(warp) * kQ80D * kQ80Slot;
  const OneTokenX ox = one_token_x(smem + q80_ring_bytes(), cols);  // x after the rings
  uint64_t* bars = reinterpret_cast<uint64_t*>(ox.part + kWarps * kR) + warp * kQ80D;

  const int n_blk = cols / 32;
  const int n_chunks = (n_blk + kQ80Blocks - 1) / kQ80Blocks;
  // Warp-major group order (launch_q80_one_token): with fewer groups than warp slots every block
  // still gets work, so a small matrix is read by all SMs.
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
    q80_issue(pw, pok, pcur.c, n_blk, ring_s + slot * uint32_t(kQ80Slot), bar_s + 8u * slot);
    pcur.advance();
  };
  if (lane == 0) ring_start<kQ80D>(bar_s, pcur, issue_next);
  __syncwarp();
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  stage_x1_batched<kStageXB>(a, ox.xq, ox.xq_cs, ox.xd, ox.part);
  __syncthreads();

  const int8_t* const xq = ox.xq;
  const int xq_cs = ox.xq_cs;
  const float2* const xd = ox.xd;
  float acc[kR] = {0.0f, 0.0f};
  int64_t g = g0;
  int c = 0;
  int row1_off = kQ80RowBytes;  // a missing second row (odd row count) reads row 0's bytes, never stored
  for (int64_t i = 0; i < n_st; ++i) {
    const int slot = int(i % kQ80D);
    if (c == 0) {
      const uint8_t* w[kR];
      bool ok[kR];
      const uint8_t* end[kR];
      group_rows(a, g, w, ok, end);
      row1_off = ok[1] ? kQ80RowBytes : 0;
    }
    mbar_wait(bar_s + 8u * uint32_t(slot), uint32_t((i / kQ80D) & 1));
    const int nb = min(kQ80Blocks, n_blk - c * kQ80Blocks);
    const bool live = 2 * lane < nb;
    const int run = c * (kQ80Blocks / 2) + (live ? lane : 0);  // the pair's 64-element run of x
    // The slot's words into registers first, then the slot is refilled while the math runs: the
    // copy engine has kQ80D stages of the warp in flight for all but the few cycles of these loads.
    uint32_t W[kR][17];
    {
      const uint8_t* sw = ring + slot * kQ80Slot + 68 * (live ? lane : 0);
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const uint32_t* wp = reinterpret_cast<const uint32_t*>(sw + (r == 0 ? 0 : row1_off));
#pragma unroll
        for (int k = 0; k < 17; ++k) W[r][k] = wp[k];
      }
    }
    __syncwarp();  // every lane has read the slot
    if (lane == 0 && pcur.issued < n_st) {
      fence_proxy_async_smem();  // the slot's generic-proxy reads before the async-proxy refill
      issue_next(uint32_t(slot));
    }
    if (live) {
      const int8_t* xr = xq + run * 80;
      uint4 xv[2][4];
#pragma unroll
      for (int pl = 0; pl < 2; ++pl)
#pragma unroll
        for (int k = 0; k < 4; ++k) xv[pl][k] = *reinterpret_cast<const uint4*>(xr + pl * xq_cs + 16 * k);
      const float4 us = *reinterpret_cast<const float4*>(xd + 2 * run);  // (u, sum) of blocks A, B
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        uint32_t qa[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) qa[k] = __byte_perm(W[r][k], W[r][k + 1], 0x5432);  // bytes 2..5 of W[k] | W[k+1]
        // |dot| <= 32 * 127 * 127 per plane: 254 d1 + d2 fits easily in 32 bits.
        const int sa = kPlaneScale * q80_dot8(qa, xv[0][0], xv[0][1]) + q80_dot8(qa, xv[1][0], xv[1][1]);
        const int sb = kPlaneScale * q80_dot8(W[r] + 9, xv[0][2], xv[0][3]) + q80_dot8(W[r] + 9, xv[1][2], xv[1][3]);
        acc[r] += (half_lo(W[r][0]) * us.x) * float(sa) + (half_hi(W[r][8]) * us.z) * float(sb);
      }
    }
    one_token_chunk_done(a, c, n_chunks, g, gstep, acc, lane);
  }
  pdl_trigger();
#else
  __trap();  // routed here only where sm90_code_ok() (launch_gemv_q8)
#endif
}

size_t q80_smem_bytes(int64_t cols) {
  return q80_ring_bytes() + direct_smem_bytes(cols) + size_t(kWarps) * kQ80D * sizeof(uint64_t);
}

// One persistent wave, but at least one group per block rather than one per warp: grid =
// min(n_groups, blocks per wave). 1024 x 4096 (512 groups) then runs on 264 blocks (two warps of
// each busy) instead of 64 blocks x 8 warps: 132 SMs pull its 4.5 MB instead of 64.
void launch_q80_one_token(const Args& a, cudaStream_t stream) {
  launch_one_token(gemv_q80_bulk_kernel, q80_smem_bytes(a.cols), a, stream, /*warp_major=*/true);
}

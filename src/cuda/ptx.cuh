// Inline-PTX wrappers shared by the kernels that stage global memory in shared memory with
// cp.async and read tensor-core fragments with ldmatrix (attention_prefill.cu, attention_decode.cu,
// matmul_gemv_q8.cu, matmul_mma_q8_kernel.cuh), stream weights past L1, and (sm_90) fill shared
// memory with bulk async copies. sm_80+ unless marked.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fathom::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared (L2 only: .cg).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) { cp_async16(smem_u32(dst), src); }
// The same; ok false writes 16 zero bytes instead (src-size 0: src is not read but must still be a
// valid address expression).
__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// ldmatrix: lanes 8i..8i+7 give the row addresses of 8x8 b16 matrix i, register i holds it: lane t
// gets (row t/4, cols 2(t%4), 2(t%4)+1), or with .trans (rows 2(t%4), 2(t%4)+1, col t/4).
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                              uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x2(uint32_t addr, uint32_t& r0, uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}

// 16-byte global load that skips L1 (streamed data, each byte read once: GEMV weights).
__device__ __forceinline__ uint4 ldg_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// ---- sm_90: mbarrier + bulk async copy (the TMA engine's 1-D form) ----------------------------
// A bulk copy moves `bytes` (a multiple of 16; 16-byte aligned addresses) from global to shared
// memory without any thread touching them and counts them against the transaction count of the
// mbarrier; a phase completes when its one arrival (arrive_expect_tx) and all its bytes are in.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// Makes barrier initialisations visible to the async proxy (the bulk copies) before first use.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               ::"r"(dst), "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
// A 2-D box of a tensor map (cuTensorMapEncodeTiled; the map a __grid_constant__ kernel parameter)
// at element coordinates (x, y) into shared memory, counted like bulk_g2s. Rows of the box past the
// tensor arrive as zeros and count too: the box's full bytes always complete.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* tmap, int x, int y, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      ::"r"(dst), "l"(tmap), "r"(x), "r"(y), "r"(bar)
      : "memory");
}
// Waits until the phase of the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// The producer side of a warp's bulk-copy ring (the one-token bulk GEMVs): the warp walks groups
// g0, g0 + gstep, ... of n_chunks stages each; lane 0 requests stage `issued` into slot
// issued % D. issue(slot) requests the stage at (g, c) and then calls advance().
struct RingCursor {
  int64_t g;      // group of the next stage to request
  int64_t gstep;
  int c;          // its chunk
  int n_chunks;
  int64_t issued;
  int64_t n_st;   // this warp's stages
  __device__ __forceinline__ RingCursor(int64_t g0, int64_t gstep_, int64_t n_groups, int n_chunks_)
      : g(g0), gstep(gstep_), c(0), n_chunks(n_chunks_), issued(0),
        n_st((g0 < n_groups ? (n_groups - g0 + gstep_ - 1) / gstep_ : 0) * n_chunks_) {}
  __device__ __forceinline__ void advance() {
    ++issued;
    if (++c == n_chunks) {
      c = 0;
      g += gstep;
    }
  }
};
// Lane 0, before pdl_wait (no kernel of the step writes the weights, so the ring fills during the
// previous kernel's tail): the D slots' barriers, then the first D stages.
template <int D, class Issue>
__device__ __forceinline__ void ring_start(uint32_t bar_s, const RingCursor& cur, Issue&& issue) {
  for (int s = 0; s < D; ++s) mbar_init(bar_s + 8u * s, 1u);
  fence_barrier_init();
  for (int s = 0; s < D && s < cur.n_st; ++s) issue(uint32_t(s));
}

}  // namespace fathom::cuda

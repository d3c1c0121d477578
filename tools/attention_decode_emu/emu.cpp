// Warp emulator for src/cuda/attention_decode.cu (see run.sh): every lane is a host thread;
// shuffles, ldmatrix and mma.sync exchange through a shared buffer between spin barriers and
// follow the PTX ISA's fragment layouts (m16n8k16 .f16: a = {(g, 2t..), (g+8, 2t..), (g, 2t+8..),
// (g+8, 2t+8..)}, b = {(k 2t.., n g), (k 2t+8.., n g)}, c = {(g, 2t..), (g+8, 2t..)}; ldmatrix:
// lane l gets row l/4, columns 2(l%4)..+1 of matrix i, transposed with .trans). cp.async copies
// at once. The split plan mirrors plan_decode with a given resident-block count.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/attention_decode.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"
#include "fathom/cpu_ops.h"
#include "fathom/quant.h"

#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

using std::max;
using std::min;

thread_local uint3 threadIdx;
uint3 blockIdx;  // one block at a time

struct SpinBarrier {
  std::atomic<int> count{0}, gen{0};
  int n = 32;
  void wait() {
    const int g = gen.load();
    if (count.fetch_add(1) + 1 == n) {
      count.store(0);
      gen.fetch_add(1);
    } else {
      while (gen.load() == g) std::this_thread::yield();
    }
  }
};

struct Block {
  SpinBarrier warp_bar[4];
  SpinBarrier block_bar;
  uint64_t x[4][32][12];
};
Block* g_blk = nullptr;
unsigned char* g_smem_base = nullptr;
std::vector<float> g_dyn;
float* emu_dyn_smem_f() { return g_dyn.data(); }

inline int lane_id() { return threadIdx.x & 31; }
inline int warp_id() { return threadIdx.x >> 5; }

template <typename T>
T shfl_impl(T v, int src) {
  const int w = warp_id(), l = lane_id();
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  g_blk->x[w][l][0] = b;
  g_blk->warp_bar[w].wait();
  uint64_t r = g_blk->x[w][src & 31][0];
  g_blk->warp_bar[w].wait();
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}
template <typename T>
T __shfl_sync(unsigned, T v, int src) { return shfl_impl(v, src); }
template <typename T>
T __shfl_xor_sync(unsigned, T v, int m) { return shfl_impl(v, lane_id() ^ m); }
void __syncwarp() { g_blk->warp_bar[warp_id()].wait(); }
void __syncthreads() { g_blk->block_bar.wait(); }

namespace fathom::cuda {
namespace {
uint32_t smem_u32(const void* p) {
  g_smem_base = (unsigned char*)p;
  return 0;
}
void cp_async16_zfill(uint32_t dst, const void* src, bool ok) {  // ptx.cuh's, emulated
  if (ok) std::memcpy(g_smem_base + dst, src, 16);
  else std::memset(g_smem_base + dst, 0, 16);
}
void cp_async_commit() {}
template <int N>
void cp_async_wait() {}
uint16_t lds16(uint32_t addr) {
  uint16_t v;
  std::memcpy(&v, g_smem_base + addr, 2);
  return v;
}
void ldsm_impl(uint32_t addr, uint32_t r[4], bool trans) {
  const int w = warp_id(), l = lane_id();
  g_blk->x[w][l][0] = addr;
  g_blk->warp_bar[w].wait();
  for (int i = 0; i < 4; ++i) {
    uint16_t e0, e1;
    if (!trans) {
      const uint32_t row = uint32_t(g_blk->x[w][8 * i + l / 4][0]);
      e0 = lds16(row + 4 * (l % 4));
      e1 = lds16(row + 4 * (l % 4) + 2);
    } else {
      const uint32_t row0 = uint32_t(g_blk->x[w][8 * i + 2 * (l % 4)][0]);
      const uint32_t row1 = uint32_t(g_blk->x[w][8 * i + 2 * (l % 4) + 1][0]);
      e0 = lds16(row0 + 2 * (l / 4));
      e1 = lds16(row1 + 2 * (l / 4));
    }
    r[i] = uint32_t(e0) | (uint32_t(e1) << 16);
  }
  g_blk->warp_bar[w].wait();
}
void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  uint32_t r[4];
  ldsm_impl(addr, r, false);
  r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}
void ldsm_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  uint32_t r[4];
  ldsm_impl(addr, r, true);
  r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}
// EMU_FTZ=1: mma inputs that are fp16 subnormals count as zero (a tensor core that flushed them).
const bool g_ftz = [] {
  const char* e = std::getenv("EMU_FTZ");
  return e && e[0] == '1';
}();
float h2f(uint32_t reg, int half) {
  uint16_t b = uint16_t(half ? reg >> 16 : reg & 0xFFFF);
  if (g_ftz && (b & 0x7C00) == 0) b &= 0x8000;
  return fathom::fp16_to_fp32(b);
}
void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  const int w = warp_id(), l = lane_id();
  uint64_t* mine = g_blk->x[w][l];
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b0;
  mine[5] = b1;
  g_blk->warp_bar[w].wait();
  auto A = [&](int r, int k) {
    const int lane = (r % 8) * 4 + (k % 8) / 2, reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return h2f(uint32_t(g_blk->x[w][lane][reg]), k % 2);
  };
  auto B = [&](int k, int n) {
    const int lane = n * 4 + (k % 8) / 2, reg = 4 + (k >= 8 ? 1 : 0);
    return h2f(uint32_t(g_blk->x[w][lane][reg]), k % 2);
  };
  const int gid = l / 4, tig = l % 4;
  float d[4];
  for (int i = 0; i < 4; ++i) {
    const int r = gid + (i >= 2 ? 8 : 0), col = 2 * tig + (i % 2);
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A(r, k) * B(k, col);
    d[i] = acc;
  }
  g_blk->warp_bar[w].wait();
  for (int i = 0; i < 4; ++i) c[i] = d[i];
}
}  // namespace
}  // namespace fathom::cuda

// rope_math.cuh's explicitly rounded float arithmetic (host float is IEEE round-to-nearest).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }

#include "emu_kernel.inc"  // gen.py output

namespace fc = fathom::cuda;

template <typename F>
void run_grid(dim3 grid, int threads, F body) {
  Block blk;
  for (auto& b : blk.warp_bar) b.n = 32;
  blk.block_bar.n = threads;
  g_blk = &blk;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = make_uint3(x, y, z);
        std::vector<std::thread> th;
        for (int t = 0; t < threads; ++t)
          th.emplace_back([&, t] {
            threadIdx = make_uint3(t, 0, 0);
            body();
          });
        for (auto& t : th) t.join();
      }
}

// Mirror of launch_attention_decode's argument setup, with blocks_per_sm x n_sms given.
void emu_launch(const fc::AttentionParams& p, int slots) {
  using namespace fc;
  DecodeArgs a{};
  a.p = p;
  const float scale = p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(float(p.head_dim));
  a.qscale = p.softcap > 0.0f ? scale : scale * 1.4426950408889634f;
  const int g = p.n_head / p.n_head_kv;
  a.n_head_groups = (g + 7) / 8;
  a.heads_per_group = (g + a.n_head_groups - 1) / a.n_head_groups;
  a.quantum = 4096 / p.head_dim;
  const int64_t base = int64_t(p.n_seqs) * p.n_head_kv * a.n_head_groups;
  int64_t keys = std::max(1, p.max_kv_len);
  if (p.sliding_window > 0) keys = std::min<int64_t>(keys, p.sliding_window);
  int64_t want = slots / base;
  want = std::min(want, (keys + 127) / 128);
  a.n_splits = int(std::max<int64_t>(1, want));
  a.bs_shift = -1;
  for (int s = 0; s < 31; ++s)
    if ((1 << s) == p.block_size) a.bs_shift = s;
  std::printf("  n_splits %d, groups %d x %d\n", a.n_splits, a.n_head_groups, a.heads_per_group);
  const dim3 grid(a.n_splits, p.n_head_kv * a.n_head_groups, p.n_seqs);
  switch (p.head_dim) {
    case 64: run_grid(grid, 32, [&] { fc::attention_decode_split_kernel<64>(a); }); break;
    case 128: run_grid(grid, 32, [&] { fc::attention_decode_split_kernel<128>(a); }); break;
    default: run_grid(grid, 32, [&] { fc::attention_decode_split_kernel<256>(a); }); break;
  }
  if (a.n_splits > 1) {
    g_dyn.assign(a.n_splits, 0.0f);
    run_grid(dim3(p.n_head, p.n_seqs, 1), 128, [&] { fc::attention_decode_merge_kernel(a); });
  }
}

struct Seq { int kv_len, q_len; };
// n_rot > 0: the decode with RoPE + KV store fused in (AttentionParams::rope, NEOX when neox):
// the kernel gets the un-rotated q and new key rows, the reference their host rotation, and the
// new key's cache rows start as NaN and must hold the rotated fp16 rows afterwards.
bool run_case(int n_head, int n_head_kv, int D, std::vector<Seq> seqs, int bs, float softcap, int window,
              bool causal, int bound, int slots, int n_rot = 0, bool neox = false) {
  std::printf("case H %d Hkv %d D %d bs %d softcap %g window %d causal %d bound %d slots %d kv:", n_head, n_head_kv,
              D, bs, softcap, window, causal, bound, slots);
  for (auto& s : seqs) std::printf(" %d%s", s.kv_len, s.q_len ? "" : "(noq)");
  if (n_rot > 0) std::printf(" rope %s/%d", neox ? "NEOX" : "NORM", n_rot);
  std::printf("\n");
  const int n_seqs = int(seqs.size());
  const float rope_base = 500000.0f, rope_scale = 0.5f;
  auto rotate = [&](float* row, int pos) {  // one head row, in place (reference arithmetic)
    std::vector<float> x(row, row + D);
    for (int i = 0; i < n_rot / 2; ++i) {
      const double inv_freq = std::exp2(-double(2 * i) / double(n_rot) * std::log2(double(rope_base)));
      const double th = double(rope_scale) * (double(pos) * inv_freq);
      const float c = float(std::cos(th)), sn = float(std::sin(th));
      const int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
      row[a] = x[a] * c - x[b] * sn;
      row[b] = x[a] * sn + x[b] * c;
    }
  };
  std::vector<float> k_new, v_new;
  std::vector<int32_t> slot_map;
  std::mt19937 rng(uint32_t(n_head * 7919 + D * 31 + n_seqs * 7 + bs + window));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto r16 = [](float x) { return fathom::fp16_to_fp32(fathom::fp32_to_fp16(x)); };
  int max_blocks = 1, total_blocks = 0, n_tokens = 0, max_kv = 0;
  for (auto& s : seqs) {
    const int nb = (s.kv_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    n_tokens += s.q_len;
    max_kv = std::max(max_kv, s.kv_len);
  }
  const int n_phys = total_blocks + 3;
  std::vector<int32_t> perm(n_phys);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> table(size_t(n_seqs) * max_blocks, 0);
  const size_t block_elems = size_t(n_head_kv) * bs * D;
  std::vector<uint16_t> kc(n_phys * block_elems, 0xFFFF), vc(n_phys * block_elems, 0xFFFF);
  std::vector<float> q(size_t(std::max(n_tokens, 1)) * n_head * D), want(q.size(), 0.0f);
  std::vector<int32_t> q_pos(std::max(n_tokens, 1)), q_start(n_seqs + 1), kv_len(n_seqs);
  struct RowWant {
    int32_t slot;
    int h, d;
    uint16_t k, v;
  };
  std::vector<RowWant> want_kc;
  fathom::cpu::AttentionParams cp;
  cp.n_head = n_head;
  cp.n_head_kv = n_head_kv;
  cp.head_dim_k = cp.head_dim_v = D;
  cp.softcap = softcap;
  cp.causal = causal;
  cp.sliding_window = window;
  int next_phys = 0, tok = 0;
  for (int s = 0; s < n_seqs; ++s) {
    kv_len[s] = seqs[s].kv_len;
    q_start[s] = tok;
    std::vector<float> k(size_t(seqs[s].kv_len) * n_head_kv * D), v(k.size());
    for (auto& x : k) x = r16(nd(rng));
    for (auto& x : v) x = r16(nd(rng));
    const int nb = (seqs[s].kv_len + bs - 1) / bs;
    for (int b = 0; b < nb; ++b) table[size_t(s) * max_blocks + b] = perm[next_phys++];
    for (int j = 0; j < seqs[s].kv_len; ++j)
      for (int h = 0; h < n_head_kv; ++h)
        for (int d = 0; d < D; ++d) {
          const size_t phys = table[size_t(s) * max_blocks + j / bs];
          const size_t at = phys * block_elems + (size_t(h) * bs + j % bs) * D + d;
          kc[at] = fathom::fp32_to_fp16(k[(size_t(j) * n_head_kv + h) * D + d]);
          vc[at] = fathom::fp32_to_fp16(v[(size_t(j) * n_head_kv + h) * D + d]);
        }
    if (seqs[s].q_len == 1) {
      q_pos[tok] = std::max(seqs[s].kv_len - 1, 0);
      float* qs = q.data() + size_t(tok) * n_head * D;
      for (int i = 0; i < n_head * D; ++i) qs[i] = nd(rng);
      std::vector<float> q_ref(qs, qs + n_head * D);
      if (n_rot > 0) {
        const int pos = q_pos[tok];
        for (int h = 0; h < n_head; ++h) rotate(q_ref.data() + h * D, pos);
        slot_map.push_back(-1);
        for (int i = 0; i < n_head_kv * D; ++i) {
          k_new.push_back(nd(rng));
          v_new.push_back(nd(rng));
        }
        if (seqs[s].kv_len > 0) {
          const int32_t phys = table[size_t(s) * max_blocks + pos / bs];
          slot_map.back() = phys * bs + pos % bs;
          for (int h = 0; h < n_head_kv; ++h) {
            std::vector<float> kr(k_new.end() - (n_head_kv - h) * D, k_new.end() - (n_head_kv - h - 1) * D);
            rotate(kr.data(), pos);
            for (int d = 0; d < D; ++d) {
              const size_t at = size_t(phys) * block_elems + (size_t(h) * bs + pos % bs) * D + d;
              kc[at] = vc[at] = 0xFFFF;
              k[(size_t(pos) * n_head_kv + h) * D + d] = r16(kr[d]);
              v[(size_t(pos) * n_head_kv + h) * D + d] = r16(v_new[v_new.size() - (n_head_kv - h) * D + d]);
            }
          }
        }
      }
      fathom::cpu::attention(q_ref.data(), q_pos.data() + tok, 1, k.data(), v.data(), nullptr, seqs[s].kv_len, cp,
                             want.data() + size_t(tok) * n_head * D);
      if (n_rot > 0 && seqs[s].kv_len > 0) {  // the fp16 rows the kernel must store
        const int pos = q_pos[tok];
        for (int h = 0; h < n_head_kv; ++h)
          for (int d = 0; d < D; ++d) {
            const size_t src = (size_t(pos) * n_head_kv + h) * D + d;
            want_kc.push_back({slot_map.back(), h, d, fathom::fp32_to_fp16(k[src]), fathom::fp32_to_fp16(v[src])});
          }
      }
    }
    tok += seqs[s].q_len;
  }
  q_start[n_seqs] = tok;
  std::vector<float> out(q.size(), std::nanf(""));
  fc::AttentionParams p;
  p.q = q.data();
  p.out = out.data();
  p.q_pos = q_pos.data();
  p.q_seq_start = q_start.data();
  p.kv_len = kv_len.data();
  p.block_table = table.data();
  p.max_blocks_per_seq = max_blocks;
  p.k_cache = kc.data();
  p.v_cache = vc.data();
  p.block_size = bs;
  p.n_seqs = n_seqs;
  p.n_tokens = std::max(n_tokens, 1);
  p.n_head = n_head;
  p.n_head_kv = n_head_kv;
  p.head_dim = D;
  p.softcap = softcap;
  p.causal = causal;
  p.sliding_window = window;
  p.max_q_len = 1;
  p.max_kv_len = bound > 0 ? bound : std::max(max_kv, 1);
  std::vector<float> ws(size_t(n_seqs) * n_head * 600 * (D + 2), std::nanf(""));
  p.workspace = ws.data();
  p.workspace_bytes = ws.size() * 4;
  if (n_rot > 0) {
    p.rope.type = neox ? fathom::RopeType::NEOX : fathom::RopeType::NORM;
    p.rope.n_rot = n_rot;
    p.rope.freq_base = rope_base;
    p.rope.freq_scale = rope_scale;
    p.rope.k = k_new.data();
    p.rope.v = v_new.data();
    p.rope.slot_mapping = slot_map.data();
    p.rope.k_cache = kc.data();
    p.rope.v_cache = vc.data();
    p.rope.block_size = bs;
  }
  emu_launch(p, slots);
  size_t kv_bad = 0;
  for (const RowWant& w : want_kc) {
    const size_t at = size_t(w.slot / bs) * block_elems + (size_t(w.h) * bs + w.slot % bs) * D + w.d;
    // The kernel's rotation rounds differently from the reference's (float, contracted or not):
    // the stored fp16 may differ by one unit.
    if (std::abs(int(kc[at]) - int(w.k)) > 1 || vc[at] != w.v) ++kv_bad;
  }
  if (kv_bad) std::printf("  FAIL: %zu stored K/V cache elements differ\n", kv_bad);
  double worst = 0.0;
  size_t wi = 0;
  bool bad = false;
  for (size_t i = 0; i < size_t(n_tokens) * n_head * D; ++i) {
    const double e = std::fabs(double(out[i]) - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(e <= 2e-4)) bad = true;
    if (!(e <= worst)) worst = e, wi = i;
  }
  std::printf("  %s worst rel err %.3g at %zu (got %g want %g)\n", bad ? "FAIL" : "ok", worst, wi, out[wi], want[wi]);
  return !bad && kv_bad == 0;
}

int main(int argc, char** argv) {
  const int which = argc > 1 ? std::atoi(argv[1]) : 0;
  bool ok = true;
  auto L = [](std::initializer_list<int> v) {
    std::vector<Seq> s;
    for (int k : v) s.push_back({k, 1});
    return s;
  };
  if (which == 0 || which == 1) {
    for (int D : {64, 128, 256})
      for (int bs : {16, 7})
        ok &= run_case(4 * 2, 2, D, L({1, 15, 16, 17, 300, 1000}), bs, 0, 0, true, 0, 528);
  }
  if (which == 0 || which == 2) {
    ok &= run_case(2, 2, 128, L({1, 17, 700}), 16, 0, 0, true, 0, 528);      // g 1
    ok &= run_case(16, 2, 64, L({129, 5}), 7, 0, 0, true, 0, 528);           // g 8
    ok &= run_case(24, 2, 128, L({300, 3}), 16, 0, 0, true, 0, 528);         // g 12: 2 groups of 6
    ok &= run_case(6, 2, 256, L({200, 2}), 16, 0, 0, true, 0, 528);          // g 3
  }
  if (which == 0 || which == 3) {
    ok &= run_case(8, 2, 128, L({1000, 5, 700}), 16, 0, 0, true, 32768, 528);  // bound above
    ok &= run_case(4, 1, 256, L({700, 300}), 16, 30.0f, 0, true, 0, 528);      // softcap
    ok &= run_case(8, 4, 128, L({1500, 100, 513}), 16, 0, 512, true, 0, 528);  // window
    ok &= run_case(4, 2, 64, L({1000, 17}), 7, 0, 300, true, 8192, 528);       // window, bs 7, bound
    ok &= run_case(4, 2, 128, L({50, 600}), 16, 0, 0, false, 0, 528);          // noncausal
    ok &= run_case(8, 2, 128, {{1000, 1}, {0, 1}, {500, 0}, {33, 1}}, 16, 0, 0, true, 0, 528);  // edges
    ok &= run_case(2, 1, 64, L({5000}), 16, 0, 0, true, 0, 528);               // 40 splits (> 32 lanes)
    ok &= run_case(8, 2, 128, L({1000, 300}), 16, 0, 0, true, 0, 2);           // 1 split: direct out
  }
  if (which == 0 || which == 4) {  // RoPE + KV store fused in
    ok &= run_case(8, 2, 128, L({1, 64, 65, 700}), 16, 0, 0, true, 32768, 528, 128, false);
    ok &= run_case(4, 2, 64, L({300, 17}), 7, 0, 0, true, 0, 528, 32, true);
    ok &= run_case(24, 2, 128, {{300, 1}, {0, 1}, {50, 0}, {129, 1}}, 16, 0, 100, true, 0, 528, 64, false);
    ok &= run_case(4, 1, 256, L({200, 2}), 16, 0, 0, true, 0, 528, 256, true);
    ok &= run_case(8, 2, 128, L({1000, 300}), 16, 0, 0, true, 0, 2, 128, true);  // 1 split
  }
  std::printf(ok ? "ALL OK\n" : "SOME FAILED\n");
  return ok ? 0 : 1;
}

// GPU decode attention (the split kernel of src/cuda/attention_decode.cu) against
// fathom::cpu::attention on the same fp16-rounded K/V. Contexts 0, 1, 15, 16, 17, 63-65, 128,
// 129, 576, 1000, 4097 and 33000 keys; cache block sizes 16 and 7 (pages scattered in a shuffled
// pool); GQA 1, 3, 4, 5, 8, 12 and 16 (two head groups); head_dim 64, 128, 256; several sequences
// of different lengths per batch; a host-side bound (max_kv_len) far above the real lengths, as the engine's decode graph
// passes n_ctx; sliding window, softcap, non-causal; a sequence with no query. Cache slots no
// token owns hold fp16 NaN, so reading one fails the test (a masked NaN still poisons P V).
// DISABLED_Bench times the split kernel (opt in with --gtest_also_run_disabled_tests).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/attention_decode.cuh"
#include "cuda/ops.cuh"
#include "fathom/cpu_ops.h"
#include "fathom/quant.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

struct DecSeq {
  int kv_len;
  int q_len = 1;  // 1: the decode query at position max(kv_len - 1, 0); 0: no query this step
};

struct DecCase {
  int n_head, n_head_kv, head_dim;
  std::vector<DecSeq> seqs;
  int block_size = 16;
  float softcap = 0.0f;
  int window = 0;
  bool causal = true;
  int bound = 0;  // host-side max_kv_len; 0 = the longest kv_len
  // n_rot > 0: also the decode with RoPE + KV store fused in (AttentionParams::rope) against
  // launch_rope_kv followed by the unfused kernel, bit for bit (fused_rope_case).
  int n_rot = 0;
  RopeType rope_type = RopeType::NORM;
  bool rope_factors = false;
  std::string name() const {
    std::string s = "attention_decode(n_head=" + std::to_string(n_head) + ",n_head_kv=" +
                    std::to_string(n_head_kv) + ",head_dim=" + std::to_string(head_dim) +
                    ",block_size=" + std::to_string(block_size) + ",kv=[";
    for (size_t i = 0; i < seqs.size(); ++i) {
      s += (i ? "," : "") + std::to_string(seqs[i].kv_len);
      if (seqs[i].q_len == 0) s += "(no query)";
    }
    s += "]";
    if (bound > 0) s += ",max_kv_len=" + std::to_string(bound);
    if (softcap > 0) s += ",softcap=" + std::to_string(int(softcap));
    if (window > 0) s += ",window=" + std::to_string(window);
    if (!causal) s += ",noncausal";
    if (n_rot > 0)
      s += std::string(",rope=") + (rope_type == RopeType::NORM ? "NORM" : "NEOX") + "/" +
           std::to_string(n_rot) + (rope_factors ? "+factors" : "");
    return s + ")";
  }
};

std::vector<DecSeq> lens(std::initializer_list<int> kv) {
  std::vector<DecSeq> v;
  for (int k : kv) v.push_back({k, 1});
  return v;
}

// Tolerance: the output is a convex combination of V rows (|v| < ~5). The kernel computes both
// products on tensor cores with every fp32 operand split into two fp16 parts (hi + lo, error
// <= 2^-22 relative, or 2^-25 absolute for tiny values): scores and weights agree with fp32 to
// ~1e-6 relative, so as for the fp32 kernels the difference to the CPU (double sums) is fp32
// rounding, exp2f and summation order, ~1e-5. 2e-4 * (1 + |want|) leaves headroom while a wrong
// mask, page, fragment or head index moves outputs by O(0.1) (the short sequences of every batch
// output one or a few V rows).
void run_case(const DecCase& c) {
  SCOPED_TRACE(c.name());
  const int D = c.head_dim, n_seqs = int(c.seqs.size()), bs = c.block_size;
  std::mt19937 rng(uint32_t(c.n_head * 7919 + D * 31 + n_seqs * 7 + bs + c.window));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto r16 = [](float x) { return fp16_to_fp32(fp32_to_fp16(x)); };

  int max_blocks = 1, total_blocks = 0, n_tokens = 0, max_kv = 0;
  for (const auto& s : c.seqs) {
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
  const size_t block_elems = size_t(c.n_head_kv) * bs * D;
  std::vector<uint16_t> kc(n_phys * block_elems, 0xFFFF), vc(n_phys * block_elems, 0xFFFF);
  std::vector<float> q(size_t(std::max(n_tokens, 1)) * c.n_head * D), want_f(q.size(), 0.0f);
  std::vector<int32_t> q_pos(std::max(n_tokens, 1)), q_start(n_seqs + 1), kv_len(n_seqs);

  cpu::AttentionParams cp;
  cp.n_head = c.n_head;
  cp.n_head_kv = c.n_head_kv;
  cp.head_dim_k = cp.head_dim_v = D;
  cp.softcap = c.softcap;
  cp.causal = c.causal;
  cp.sliding_window = c.window;

  int next_phys = 0, tok = 0;
  for (int s = 0; s < n_seqs; ++s) {
    const DecSeq& sp = c.seqs[s];
    kv_len[s] = sp.kv_len;
    q_start[s] = tok;
    std::vector<float> k(size_t(sp.kv_len) * c.n_head_kv * D), v(k.size());
    for (auto& x : k) x = r16(nd(rng));
    for (auto& x : v) x = r16(nd(rng));
    const int nb = (sp.kv_len + bs - 1) / bs;
    for (int b = 0; b < nb; ++b) table[size_t(s) * max_blocks + b] = perm[next_phys++];
    for (int j = 0; j < sp.kv_len; ++j)
      for (int h = 0; h < c.n_head_kv; ++h)
        for (int d = 0; d < D; ++d) {
          const size_t phys = table[size_t(s) * max_blocks + j / bs];
          const size_t at = phys * block_elems + (size_t(h) * bs + j % bs) * D + d;
          kc[at] = fp32_to_fp16(k[(size_t(j) * c.n_head_kv + h) * D + d]);
          vc[at] = fp32_to_fp16(v[(size_t(j) * c.n_head_kv + h) * D + d]);
        }
    if (sp.q_len == 1) {
      q_pos[tok] = std::max(sp.kv_len - 1, 0);
      float* qs = q.data() + size_t(tok) * c.n_head * D;
      for (int i = 0; i < c.n_head * D; ++i) qs[i] = nd(rng);
      cpu::attention(qs, q_pos.data() + tok, 1, k.data(), v.data(), nullptr, sp.kv_len, cp,
                     want_f.data() + size_t(tok) * c.n_head * D);
    }
    tok += sp.q_len;
  }
  q_start[n_seqs] = tok;

  DeviceBuffer<float> d_q(q), d_out(q.size());
  DeviceBuffer<uint16_t> d_k(kc), d_v(vc);
  DeviceBuffer<int32_t> d_pos(q_pos), d_start(q_start), d_len(kv_len), d_table(table);
  d_out.poison();
  cuda::AttentionParams p;
  p.q = d_q.get();
  p.out = d_out.get();
  p.q_pos = d_pos.get();
  p.q_seq_start = d_start.get();
  p.kv_len = d_len.get();
  p.block_table = d_table.get();
  p.max_blocks_per_seq = max_blocks;
  p.k_cache = d_k.get();
  p.v_cache = d_v.get();
  p.block_size = bs;
  p.n_seqs = n_seqs;
  p.n_tokens = std::max(n_tokens, 1);
  p.n_head = c.n_head;
  p.n_head_kv = c.n_head_kv;
  p.head_dim = D;
  p.softcap = c.softcap;
  p.causal = c.causal;
  p.sliding_window = c.window;
  p.max_q_len = 1;
  p.max_kv_len = c.bound > 0 ? c.bound : std::max(max_kv, 1);
  const size_t ws_bytes = cuda::attention_workspace_bytes(p);
  EXPECT_GE(ws_bytes, cuda::attention_decode_workspace_bytes(p));
  DeviceBuffer<uint8_t> ws(ws_bytes);
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  cuda::launch_attention(p, nullptr);
  std::vector<float> got = d_out.download();
  got.resize(size_t(n_tokens) * c.n_head * D);
  want_f.resize(got.size());
  std::vector<double> want(want_f.begin(), want_f.end()), tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = 2e-4 * (1.0 + std::fabs(want[i]));
  if (!got.empty()) FATHOM_EXPECT_CLOSE(c.name(), got, want, tol);
  if (c.n_rot == 0 || n_tokens == 0) return;

  // Fused RoPE: q above is the un-rotated query; each query's new key (position q_pos) gets a
  // fresh un-rotated k row and a v row. Reference: launch_rope_kv (rotates q and k, stores both
  // rows at the token's slot) then the unfused kernel; fused: one launch with p.rope. The new
  // key's cache rows start as fp16 NaN in both, so a fused kernel that read them instead of its
  // registers would fail. Expected bit-identical: the same cos/sin and rotation code
  // (rope_math.cuh) and the same fp32 q / fp16 k into the same tensor-core kernel.
  std::vector<float> k_new(size_t(n_tokens) * c.n_head_kv * D), v_new(k_new.size());
  for (auto& x : k_new) x = nd(rng);
  for (auto& x : v_new) x = nd(rng);
  std::vector<int32_t> slots(n_tokens, -1);
  std::vector<uint16_t> kc0 = kc, vc0 = vc;
  for (int s = 0; s < n_seqs; ++s) {
    if (c.seqs[s].q_len == 0 || c.seqs[s].kv_len == 0) continue;  // no key to store
    const int t = q_start[s], pos = q_pos[t];
    const int32_t phys = table[size_t(s) * max_blocks + pos / bs];
    slots[t] = phys * bs + pos % bs;
    for (int h = 0; h < c.n_head_kv; ++h)
      for (int d = 0; d < D; ++d) {
        const size_t at = size_t(phys) * block_elems + (size_t(h) * bs + pos % bs) * D + d;
        kc0[at] = vc0[at] = 0xFFFF;
      }
  }
  std::vector<float> factors(size_t(c.n_rot / 2));
  for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + float(i % 7);
  DeviceBuffer<float> d_factors(factors), d_knew(k_new), d_vnew(v_new), d_qa(q), d_ka(k_new);
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<uint16_t> d_kca(kc0), d_vca(vc0), d_kcb(kc0), d_vcb(vc0);
  DeviceBuffer<float> d_outa(q.size()), d_outb(q.size());
  d_outa.poison();
  d_outb.poison();
  cuda::RopeKvParams r;
  r.type = c.rope_type;
  r.n_rot = c.n_rot;
  r.freq_base = 500000.0f;
  r.freq_scale = 0.5f;
  r.freq_factors = c.rope_factors ? d_factors.get() : nullptr;
  r.pos = d_pos.get();
  r.n_tokens = n_tokens;
  r.n_head = c.n_head;
  r.n_head_kv = c.n_head_kv;
  r.head_dim = D;
  r.kv_type = cuda::KvType::F16;
  r.slot_mapping = d_slots.get();
  r.block_size = bs;
  cuda::RopeKvParams ra = r;
  ra.q = d_qa.get();
  ra.k = d_ka.get();
  ra.v = d_vnew.get();
  ra.k_cache = d_kca.get();
  ra.v_cache = d_vca.get();
  cuda::launch_rope_kv(ra, nullptr);
  cuda::AttentionParams pa = p;
  pa.q = d_qa.get();
  pa.out = d_outa.get();
  pa.k_cache = d_kca.get();
  pa.v_cache = d_vca.get();
  cuda::launch_attention(pa, nullptr);
  cuda::AttentionParams pb = p;
  pb.out = d_outb.get();
  pb.k_cache = d_kcb.get();
  pb.v_cache = d_vcb.get();
  pb.rope = r;
  pb.rope.k = d_knew.get();
  pb.rope.v = d_vnew.get();
  pb.rope.k_cache = d_kcb.get();
  pb.rope.v_cache = d_vcb.get();
  cuda::launch_attention(pb, nullptr);
  const std::vector<float> outa = d_outa.download(), outb = d_outb.download();
  size_t bad = 0, first = 0, nonfinite = 0;
  for (size_t i = 0; i < size_t(n_tokens) * c.n_head * D; ++i) {
    if (!std::isfinite(outa[i])) ++nonfinite;
    if (std::memcmp(&outa[i], &outb[i], 4) != 0 && bad++ == 0) first = i;
  }
  EXPECT_EQ(nonfinite, 0u) << "unfused reference output has non-finite values";
  EXPECT_EQ(bad, 0u) << bad << " outputs differ from launch_rope_kv + unfused attention; first at " << first
                     << ": " << outb[first] << " vs " << outa[first];
  EXPECT_TRUE(d_kcb.download() == d_kca.download()) << "K cache differs after the fused store";
  EXPECT_TRUE(d_vcb.download() == d_vca.download()) << "V cache differs after the fused store";
}

// Every context length of the issue in one batch (page, tile and split boundaries: 15/16/17 around
// a 16-key page, 4097 one past a power of two), for each head_dim, GQA ratio and block size.
TEST(GpuAttentionDecode, ContextsBlockSizesGqa) {
  FATHOM_REQUIRE_GPU();
  for (int D : {64, 128, 256})
    for (int bs : {16, 7})
      for (int g : {1, 4, 8}) {
        DecCase c{2 * g, 2, D, lens({1, 15, 16, 17, 1000, 4097})};
        c.block_size = bs;
        run_case(c);
      }
}

// Short contexts around the minimum split length (64 keys) and its double, one sequence (batch 1,
// the engine's decode graph: bound = n_ctx far above the real length) and several: 1 split, 2
// splits of which the second holds one key, and 9 splits at 576 keys; GQA 4 and an odd group of
// 5 query heads per kv head (3 unused rows of the 8-row block).
TEST(GpuAttentionDecode, ShortContextsAroundMinChunk) {
  FATHOM_REQUIRE_GPU();
  for (int D : {64, 128, 256})
    for (int g : {4, 5}) {
      for (int kv : {63, 64, 65, 128, 129, 576}) {
        DecCase one{2 * g, 2, D, lens({kv})};
        one.bound = 32768;
        run_case(one);
      }
      DecCase many{g, 1, D, lens({65, 64, 129, 576, 1})};
      many.bound = 4096;
      many.block_size = 7;
      run_case(many);
    }
}

// 33000 keys in one sequence: the longest split chain (many tiles per split) and many splits.
TEST(GpuAttentionDecode, LongContext) {
  FATHOM_REQUIRE_GPU();
  run_case({8, 2, 64, lens({33000})});
  run_case({8, 2, 128, lens({33000})});
  run_case({4, 1, 256, lens({33000})});
  DecCase odd{8, 1, 128, lens({33000, 17})};
  odd.block_size = 7;
  run_case(odd);
}

// The engine's decode graph passes max_kv_len = n_ctx while the real lengths are shorter: the
// split count is planned for the bound and the device cuts the real lengths.
TEST(GpuAttentionDecode, BoundAboveContexts) {
  FATHOM_REQUIRE_GPU();
  DecCase a{32, 8, 128, lens({1000, 5, 2500, 129})};
  a.bound = 32768;
  run_case(a);
  DecCase b{8, 2, 64, lens({4097})};
  b.bound = 131072;
  run_case(b);
  DecCase c{4, 1, 256, lens({1, 300})};
  c.bound = 65536;
  c.block_size = 7;
  run_case(c);
}

// More query heads per kv head than one block's 8 rows (g 12, 16) and groups smaller than 8
// (g 3): unused rows get q = 0 and are not written.
TEST(GpuAttentionDecode, HeadGroups) {
  FATHOM_REQUIRE_GPU();
  run_case({16, 1, 64, lens({1000, 7})});
  run_case({6, 2, 128, lens({129, 2000, 5})});
  run_case({24, 2, 128, lens({700, 3, 4097})});
  run_case({16, 2, 256, lens({2048, 1})});
}

TEST(GpuAttentionDecode, SoftcapWindowNoncausal) {
  FATHOM_REQUIRE_GPU();
  DecCase sc{4, 1, 256, lens({700, 3000})};
  sc.softcap = 30.0f;
  run_case(sc);
  DecCase sc2{32, 8, 128, lens({4097, 16})};
  sc2.softcap = 50.0f;
  sc2.block_size = 7;
  run_case(sc2);
  DecCase win{8, 4, 128, lens({1500, 100, 513, 33000})};
  win.window = 512;
  run_case(win);
  DecCase win7{8, 2, 64, lens({4097, 17, 1000})};
  win7.window = 1000;
  win7.block_size = 7;
  win7.bound = 32768;
  run_case(win7);
  DecCase nc{4, 2, 128, lens({50, 2000})};
  nc.causal = false;
  run_case(nc);
}

// Batches of many sequences (few splits each, the plan's other end), an empty context (zeros) and
// a sequence without a query in this step (nothing written for it).
TEST(GpuAttentionDecode, ManySequences) {
  FATHOM_REQUIRE_GPU();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(1, 3000);
  std::vector<DecSeq> seqs;
  for (int i = 0; i < 40; ++i) seqs.push_back({len(rng), 1});
  run_case({32, 8, 128, seqs});
  DecCase edge{8, 2, 128, {{1000, 1}, {0, 1}, {500, 0}, {33, 1}}};
  run_case(edge);
}

// One sequence, one kv head: 313 splits of 128 keys at 40000 (the merge walks more splits than a
// warp has lanes); with a window most of the bound is outside it.
TEST(GpuAttentionDecode, ManySplits) {
  FATHOM_REQUIRE_GPU();
  run_case({2, 1, 64, lens({40000})});
  DecCase win{4, 1, 128, lens({8192})};
  win.window = 512;
  run_case(win);
}

// RoPE + KV-cache store fused into the decode kernel (AttentionParams::rope) against the
// stand-alone rope kernel + the unfused kernel, bit for bit: NORM and NEOX, full and partial
// rotation, llama3 frequency factors, one and several splits (the new key in the last one, on a
// tile edge at 64 / 4097 keys), head groups (the cache row stored once, by head group 0), block
// size 7, a window, several sequences and one without a query.
TEST(GpuAttentionDecode, FusedRopeMatchesSeparateKernels) {
  FATHOM_REQUIRE_GPU();
  DecCase a{32, 8, 128, lens({1, 17, 64, 576, 4097})};
  a.bound = 32768;
  a.n_rot = 128;
  run_case(a);
  DecCase b{8, 2, 64, lens({65, 1000, 33000})};
  b.n_rot = 32;
  b.rope_type = RopeType::NEOX;
  b.rope_factors = true;
  b.block_size = 7;
  run_case(b);
  DecCase c{8, 2, 256, lens({300, 2})};
  c.n_rot = 256;
  c.rope_type = RopeType::NEOX;
  run_case(c);
  DecCase d{24, 2, 128, {{700, 1}, {500, 0}, {4097, 1}, {0, 1}}};
  d.n_rot = 64;
  d.rope_factors = true;
  d.window = 512;
  run_case(d);
  DecCase e{4, 1, 128, lens({1})};
  e.n_rot = 128;
  e.bound = 8;
  run_case(e);
}

// ---- bench -------------------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Device-to-device copy bandwidth (bytes read + written per second): the ceiling quoted next to
// the kernels' K+V read rate.
double copy_gbps() {
  const size_t n = size_t(512) << 20;
  DeviceBuffer<uint8_t> a(n), b(n);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    CUDA_CHECK(cudaEventRecord(e0));
    CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) t.push_back(ms);
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  return 2.0 * double(n) / (median(t) * 1e-3) / 1e9;
}

// Kernel time per decode-attention call (split kernel + merge): 20
// calls queued back to back behind 5 warm-up calls, one event between consecutive calls, median.
// K+V bytes / time is the achieved read rate. Pages of 16 tokens in order; K/V hold 1.06 (the
// time does not depend on the values). bound: the host-side max_kv_len (the engine's graph
// passes n_ctx).
TEST(GpuAttentionDecode, DISABLED_Bench) {
  FATHOM_REQUIRE_GPU();
  const double ceiling = copy_gbps();
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n", ceiling);
  struct B {
    int n_seqs, ctx, n_head, n_head_kv, D, bound;
  };
  const B cases[] = {{1, 32768, 32, 8, 128, 32768}, {8, 4096, 32, 8, 128, 4096},
                     {32, 4096, 32, 8, 128, 4096},  {8, 4096, 32, 8, 128, 32768},
                     {1, 8192, 4, 1, 256, 8192},    {1, 32768, 8, 1, 64, 32768}};
  const int bs = 16;
  for (const B& b : cases) {
    const int nb = (b.ctx + bs - 1) / bs;
    const size_t cache_elems = size_t(b.n_seqs) * nb * b.n_head_kv * bs * b.D;
    DeviceBuffer<uint16_t> kc(cache_elems), vc(cache_elems);
    CUDA_CHECK(cudaMemset(kc.get(), 0x3C, cache_elems * 2));
    CUDA_CHECK(cudaMemset(vc.get(), 0x3C, cache_elems * 2));
    std::vector<int32_t> table(size_t(b.n_seqs) * nb), pos(b.n_seqs, b.ctx - 1), start(b.n_seqs + 1),
        klen(b.n_seqs, b.ctx);
    std::iota(table.begin(), table.end(), 0);
    std::iota(start.begin(), start.end(), 0);
    DeviceBuffer<float> q(random_floats(size_t(b.n_seqs) * b.n_head * b.D, 3)),
        out(size_t(b.n_seqs) * b.n_head * b.D);
    DeviceBuffer<int32_t> d_table(table), d_pos(pos), d_start(start), d_len(klen);
    cuda::AttentionParams p;
    p.q = q.get();
    p.out = out.get();
    p.q_pos = d_pos.get();
    p.q_seq_start = d_start.get();
    p.kv_len = d_len.get();
    p.block_table = d_table.get();
    p.max_blocks_per_seq = nb;
    p.k_cache = kc.get();
    p.v_cache = vc.get();
    p.block_size = bs;
    p.n_seqs = b.n_seqs;
    p.n_tokens = b.n_seqs;
    p.n_head = b.n_head;
    p.n_head_kv = b.n_head_kv;
    p.head_dim = b.D;
    p.max_q_len = 1;
    p.max_kv_len = b.bound;
    const size_t ws_bytes = cuda::attention_workspace_bytes(p);
    DeviceBuffer<uint8_t> ws(ws_bytes);
    p.workspace = ws.get();
    p.workspace_bytes = ws_bytes;
    const double kv_bytes = double(cache_elems) * 2.0 * 2.0;
    {
      constexpr int kWarm = 5, kReps = 20;
      std::vector<cudaEvent_t> ev(kReps + 1);
      for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
      for (int i = 0; i < kWarm; ++i) cuda::launch_attention(p, nullptr);
      for (int i = 0; i < kReps; ++i) {
        CUDA_CHECK(cudaEventRecord(ev[i]));
        cuda::launch_attention(p, nullptr);
      }
      CUDA_CHECK(cudaEventRecord(ev[kReps]));
      CUDA_CHECK(cudaEventSynchronize(ev[kReps]));
      std::vector<double> us;
      for (int i = 0; i < kReps; ++i) {
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]));
        us.push_back(ms * 1e3);
      }
      for (auto& e : ev) CUDA_CHECK(cudaEventDestroy(e));
      const double t = median(us);
      const double gbps = kv_bytes / (t * 1e-6) / 1e9;
      std::printf("decode %2d seqs x %5d ctx (bound %5d), %d/%d heads, D %3d: %8.1f us  %6.0f GB/s  %5.1f%% of copy  (K+V %.1f MB)\n",
                  b.n_seqs, b.ctx, b.bound, b.n_head, b.n_head_kv, b.D, t, gbps,
                  100.0 * gbps / ceiling, kv_bytes / 1e6);
    }
  }
}

}  // namespace
}  // namespace fathom::test

// GPU paged attention (decode split-K and tiled prefill) against fathom::cpu::attention run on
// the same fp16-rounded K/V. Context lengths cross the 16-token block and the decode split
// boundaries; GQA ratios 1, 2, 3, 4 and 16 (more than one head group); sliding window, softcap,
// non-causal. Cache slots no token owns hold fp16 NaN, so reading one fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/ops.cuh"
#include "fathom/cpu_ops.h"
#include "fathom/quant.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

struct SeqSpec {
  int kv_len;
  int q_len;  // queries at positions kv_len - q_len .. kv_len - 1
};

struct AttnCase {
  int n_head, n_head_kv, head_dim;
  std::vector<SeqSpec> seqs;
  float softcap = 0.0f;
  int window = 0;
  bool causal = true;
  std::string name() const {
    std::string s = "attention(n_head=" + std::to_string(n_head) + ",n_head_kv=" +
                    std::to_string(n_head_kv) + ",head_dim=" + std::to_string(head_dim) + ",seqs=";
    for (const auto& q : seqs) s += "[kv" + std::to_string(q.kv_len) + ",q" + std::to_string(q.q_len) + "]";
    if (softcap > 0) s += ",softcap=" + std::to_string(int(softcap));
    if (window > 0) s += ",window=" + std::to_string(window);
    if (!causal) s += ",noncausal";
    return s + ")";
  }
};

constexpr int kBlock = 16;

// Tolerance: the output is a convex combination of V rows (|v| < ~5). The GPU and the CPU see
// identical fp16-rounded K/V, so the difference is fp32 rounding in the scores (~1e-6 relative),
// exp2f (<= 2 ulp) and summation order: ~1e-5 absolute at most. 2e-4 * (1 + |want|) leaves
// headroom while a wrong mask, block index or head mapping moves outputs by O(0.1).
void run_case(const AttnCase& c) {
  SCOPED_TRACE(c.name());
  const int D = c.head_dim, n_seqs = int(c.seqs.size());
  std::mt19937 rng(uint32_t(c.n_head * 1000 + D + n_seqs * 7 + c.window));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto r16 = [](float x) { return fp16_to_fp32(fp32_to_fp16(x)); };

  int max_blocks = 0, total_blocks = 0, n_tokens = 0, max_q = 0, max_kv = 0;
  for (const auto& s : c.seqs) {
    const int nb = (s.kv_len + kBlock - 1) / kBlock;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    n_tokens += s.q_len;
    max_q = std::max(max_q, s.q_len);
    max_kv = std::max(max_kv, s.kv_len);
  }
  const int n_phys = total_blocks + 3;
  std::vector<int32_t> perm(n_phys);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> table(size_t(n_seqs) * max_blocks, 0);
  const size_t block_elems = size_t(c.n_head_kv) * kBlock * D;
  std::vector<uint16_t> kc(n_phys * block_elems, 0xFFFF), vc(n_phys * block_elems, 0xFFFF);
  std::vector<float> q(size_t(n_tokens) * c.n_head * D), want_f(q.size());
  std::vector<int32_t> q_pos(n_tokens), q_start(n_seqs + 1), kv_len(n_seqs);

  cpu::AttentionParams cp;
  cp.n_head = c.n_head;
  cp.n_head_kv = c.n_head_kv;
  cp.head_dim_k = cp.head_dim_v = D;
  cp.softcap = c.softcap;
  cp.causal = c.causal;
  cp.sliding_window = c.window;

  int next_phys = 0, tok = 0;
  for (int s = 0; s < n_seqs; ++s) {
    const SeqSpec& sp = c.seqs[s];
    kv_len[s] = sp.kv_len;
    q_start[s] = tok;
    std::vector<float> k(size_t(sp.kv_len) * c.n_head_kv * D), v(k.size());
    for (auto& x : k) x = r16(nd(rng));
    for (auto& x : v) x = r16(nd(rng));
    const int nb = (sp.kv_len + kBlock - 1) / kBlock;
    for (int b = 0; b < nb; ++b) table[size_t(s) * max_blocks + b] = perm[next_phys++];
    for (int j = 0; j < sp.kv_len; ++j)
      for (int h = 0; h < c.n_head_kv; ++h)
        for (int d = 0; d < D; ++d) {
          const size_t phys = table[size_t(s) * max_blocks + j / kBlock];
          const size_t at = phys * block_elems + (size_t(h) * kBlock + j % kBlock) * D + d;
          kc[at] = fp32_to_fp16(k[(size_t(j) * c.n_head_kv + h) * D + d]);
          vc[at] = fp32_to_fp16(v[(size_t(j) * c.n_head_kv + h) * D + d]);
        }
    for (int i = 0; i < sp.q_len; ++i) q_pos[tok + i] = sp.kv_len - sp.q_len + i;
    float* qs = q.data() + size_t(tok) * c.n_head * D;
    for (size_t i = 0; i < size_t(sp.q_len) * c.n_head * D; ++i) qs[i] = nd(rng);
    cpu::attention(qs, q_pos.data() + tok, sp.q_len, k.data(), v.data(), nullptr, sp.kv_len, cp,
                   want_f.data() + size_t(tok) * c.n_head * D);
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
  p.block_size = kBlock;
  p.n_seqs = n_seqs;
  p.n_tokens = n_tokens;
  p.n_head = c.n_head;
  p.n_head_kv = c.n_head_kv;
  p.head_dim = D;
  p.softcap = c.softcap;
  p.causal = c.causal;
  p.sliding_window = c.window;
  p.max_q_len = max_q;
  p.max_kv_len = max_kv;
  const size_t ws_bytes = cuda::attention_workspace_bytes(p);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  cuda::launch_attention(p, nullptr);
  const std::vector<float> got = d_out.download();
  std::vector<double> want(want_f.begin(), want_f.end()), tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = 2e-4 * (1.0 + std::fabs(want[i]));
  FATHOM_EXPECT_CLOSE(c.name(), got, want, tol);
}

TEST(GpuAttention, DecodeAcrossBlocksAndSplits) {
  FATHOM_REQUIRE_GPU();
  for (int D : {64, 128, 256}) {
    run_case({4, 1, D, {{1, 1}, {16, 1}, {17, 1}, {300, 1}}});
    run_case({8, 2, D, {{4097, 1}, {33, 1}}});            // several splits for the long one
    run_case({6, 2, D, {{129, 1}, {2000, 1}, {5, 1}}});   // g = 3
  }
}

TEST(GpuAttention, DecodeManyHeadGroupsSoftcapWindow) {
  FATHOM_REQUIRE_GPU();
  run_case({16, 1, 64, {{1000, 1}, {7, 1}}});  // g = 16: two head groups of 8
  AttnCase sc{4, 1, 256, {{700, 1}, {3000, 1}}};
  sc.softcap = 30.0f;
  run_case(sc);
  AttnCase win{8, 4, 128, {{1500, 1}, {100, 1}, {513, 1}}};
  win.window = 512;
  run_case(win);
  AttnCase nc{4, 2, 128, {{50, 1}}};
  nc.causal = false;
  run_case(nc);
}

// Long single-sequence decode: the split plan gives 128 splits at 8192 keys with one or two kv
// heads (64 keys each; 4 blocks per SM on a 132-SM H200) and its cap of 4 x SMs splits at 40000
// keys, so attention_reduce_kernel merges more splits than a warp has lanes. With a 512-token
// window most splits see no key (m = -inf partials that must weigh nothing).
TEST(GpuAttention, DecodeManySplits) {
  FATHOM_REQUIRE_GPU();
  run_case({4, 1, 256, {{8192, 1}}});
  run_case({8, 2, 128, {{8192, 1}}});
  run_case({2, 1, 64, {{40000, 1}}});
  AttnCase win{4, 1, 128, {{8192, 1}}};
  win.window = 512;
  run_case(win);
}

TEST(GpuAttention, PrefillVarlenChunked) {
  FATHOM_REQUIRE_GPU();
  for (int D : {64, 128, 256}) {
    run_case({4, 1, D, {{37, 37}}});                         // whole prompt
    run_case({8, 2, D, {{100, 23}, {16, 16}, {81, 2}}});    // chunked: cached prefix + chunk
    run_case({6, 2, D, {{70, 70}, {5, 3}}});                // g = 3
  }
  run_case({32, 1, 64, {{50, 17}}});  // g = 32: two head groups of 16
}

TEST(GpuAttention, PrefillSoftcapWindowNoncausal) {
  FATHOM_REQUIRE_GPU();
  AttnCase sc{4, 1, 256, {{200, 200}}};
  sc.softcap = 50.0f;
  sc.window = 64;
  run_case(sc);
  AttnCase nc{4, 4, 128, {{45, 45}, {10, 3}}};
  nc.causal = false;
  run_case(nc);
}

TEST(GpuAttention, RejectsUnsupportedHeadDim) {
  FATHOM_REQUIRE_GPU();
  cuda::AttentionParams p;
  p.n_seqs = 1;
  p.n_tokens = 1;
  p.n_head = 4;
  p.n_head_kv = 1;
  p.head_dim = 96;
  EXPECT_THROW(cuda::launch_attention(p, nullptr), Error);
}

}  // namespace
}  // namespace fathom::test

// GPU paged attention (decode split-K, tensor-core prefill and the scalar prefill) against
// fathom::cpu::attention run on the same fp16-rounded K/V. Context lengths cross the cache block
// (16 and odd sizes), the 64-query / 64-key tiles of the prefill and the decode split boundaries;
// GQA ratios 1, 2, 3, 4, 8 and 16 (more than one head group); sliding window, softcap, non-causal,
// several sequences, chunked prefill over a cached prefix. Cache slots no token owns hold fp16 NaN,
// so reading one fails the test. DISABLED_BenchPrefill times the prefill kernels (opt in with
// --gtest_also_run_disabled_tests).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
  int block_size = 16;
  std::string name() const {
    std::string s = "attention(n_head=" + std::to_string(n_head) + ",n_head_kv=" +
                    std::to_string(n_head_kv) + ",head_dim=" + std::to_string(head_dim) + ",seqs=";
    for (const auto& q : seqs) s += "[kv" + std::to_string(q.kv_len) + ",q" + std::to_string(q.q_len) + "]";
    if (softcap > 0) s += ",softcap=" + std::to_string(int(softcap));
    if (window > 0) s += ",window=" + std::to_string(window);
    if (!causal) s += ",noncausal";
    if (block_size != 16) s += ",block_size=" + std::to_string(block_size);
    return s + ")";
  }
};

// Sets FATHOM_ATTN_PREFILL (prefill kernel variant, attention.cu) for one scope.
class PrefillVariant {
 public:
  explicit PrefillVariant(const char* v) {
    if (const char* old = std::getenv("FATHOM_ATTN_PREFILL")) old_ = old, had_ = true;
    if (v) setenv("FATHOM_ATTN_PREFILL", v, 1);
    else unsetenv("FATHOM_ATTN_PREFILL");
  }
  ~PrefillVariant() {
    if (had_) setenv("FATHOM_ATTN_PREFILL", old_.c_str(), 1);
    else unsetenv("FATHOM_ATTN_PREFILL");
  }

 private:
  std::string old_;
  bool had_ = false;
};

bool tensor_core_prefill() {
  const char* v = std::getenv("FATHOM_ATTN_PREFILL");
  return !(v && std::string(v) == "scalar");
}

// Extra tolerance of the tensor-core prefill, which rounds two operands to fp16 that the CPU keeps
// in fp32 (K/V are fp16 on both sides). Per (query, head), over its visible keys j, with the exact
// softmax weights p_j and output o (computed here in double):
//   1. q: the kernel rounds q * c to fp16 (c = scale * log2 e, or scale with softcap), a relative
//      error of at most 2^-11 per element, so each score moves by at most
//        E_j = 2^-11 * scale * sum_d |q_d k_jd|        (softcap's tanh has slope <= 1);
//      to first order o_d moves by sum_j p_j ds_j (v_jd - o_d), at most sum_j p_j E_j |v_jd - o_d|.
//   2. P: each unnormalised weight exp2(s - running max) <= 1 is rounded to fp16 before P V: a
//      relative 2^-11 (normal range) or an absolute 2^-25 (subnormal) error, while the row sum l
//      stays fp32; that moves o_d by at most 2^-11 sum_j p_j |v_jd| + 2^-25 sum_j |v_jd| / L,
//      L = sum_j exp(s_j - max s) >= 1.
// The bound (times 1.2 for second-order terms) is added to the fp32 tolerance; it is ~1e-3..1e-2
// for these N(0, 1) inputs, while a wrong mask, page or fragment index moves outputs by O(0.1-1)
// (a query with few visible keys, which every causal case has, outputs one or two V rows).
void add_fp16_bound(const float* q, const int32_t* q_pos, int n_q, const float* k, const float* v,
                    int n_kv, const cpu::AttentionParams& cp, double* tol) {
  const int H = int(cp.n_head), Hkv = int(cp.n_head_kv), D = int(cp.head_dim_k), g = H / Hkv;
  const double scale = 1.0 / std::sqrt(double(D));
  const double u = std::ldexp(1.0, -11), sub = std::ldexp(1.0, -25);
  std::vector<double> s(n_kv), e(n_kv), o(D);
  std::vector<int> vis;
  for (int i = 0; i < n_q; ++i)
    for (int h = 0; h < H; ++h) {
      const float* qi = q + (size_t(i) * H + h) * D;
      vis.clear();
      double mx = -1e300;
      for (int j = 0; j < n_kv; ++j) {
        if (!cpu::attention_visible(cp, q_pos[i], j)) continue;
        const float* kj = k + (size_t(j) * Hkv + h / g) * D;
        double dot = 0.0, abs_dot = 0.0;
        for (int d = 0; d < D; ++d) {
          dot += double(qi[d]) * kj[d];
          abs_dot += std::fabs(double(qi[d]) * kj[d]);
        }
        double sj = dot * scale;
        if (cp.softcap > 0.0f) sj = cp.softcap * std::tanh(sj / cp.softcap);
        s[j] = sj;
        e[j] = u * scale * abs_dot;
        mx = std::max(mx, sj);
        vis.push_back(j);
      }
      if (vis.empty()) continue;
      double L = 0.0;
      for (int j : vis) L += std::exp(s[j] - mx);
      std::fill(o.begin(), o.end(), 0.0);
      for (int j : vis) {
        const double pj = std::exp(s[j] - mx) / L;
        const float* vj = v + (size_t(j) * Hkv + h / g) * D;
        for (int d = 0; d < D; ++d) o[d] += pj * vj[d];
      }
      double* ti = tol + (size_t(i) * H + h) * D;
      for (int d = 0; d < D; ++d) {
        double b = 0.0;
        for (int j : vis) {
          const double pj = std::exp(s[j] - mx) / L;
          const double vjd = v[(size_t(j) * Hkv + h / g) * D + d];
          b += pj * e[j] * std::fabs(vjd - o[d]) + u * pj * std::fabs(vjd) + sub * std::fabs(vjd) / L;
        }
        ti[d] += 1.2 * b;
      }
    }
}

// Tolerance: the output is a convex combination of V rows (|v| < ~5). The GPU and the CPU see
// identical fp16-rounded K/V, so for the fp32 kernels (decode, scalar prefill) the difference is
// fp32 rounding in the scores (~1e-6 relative), exp2f (<= 2 ulp) and summation order: ~1e-5
// absolute at most. 2e-4 * (1 + |want|) leaves headroom while a wrong mask, block index or head
// mapping moves outputs by O(0.1). The tensor-core prefill adds add_fp16_bound's term.
void run_case(const AttnCase& c) {
  SCOPED_TRACE(c.name());
  const int D = c.head_dim, n_seqs = int(c.seqs.size());
  const int kBlock = c.block_size;
  std::mt19937 rng(uint32_t(c.n_head * 1000 + D + n_seqs * 7 + c.window + 31 * c.block_size));
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
  const bool fp16_prefill = max_q > 1 && tensor_core_prefill();
  std::vector<double> tol(q.size(), 0.0);

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
    if (fp16_prefill)
      add_fp16_bound(qs, q_pos.data() + tok, sp.q_len, k.data(), v.data(), sp.kv_len, cp,
                     tol.data() + size_t(tok) * c.n_head * D);
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
  std::vector<double> want(want_f.begin(), want_f.end());
  for (size_t i = 0; i < want.size(); ++i) tol[i] += 2e-4 * (1.0 + std::fabs(want[i]));
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

// Long single-sequence decode (the split kernel of attention_decode.cu): 128 splits of 64 keys at
// 8192 keys with one or two kv heads on a 132-SM H200, 313 splits of 128 keys at 40000, so the
// merge kernel combines more splits than a warp has lanes. With a 512-token window most splits
// see no key (m = -inf partials that must weigh nothing).
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

// Tensor-core prefill shapes: query runs that are not multiples of the 64-row tile, several
// sequences of different lengths in one launch (one with a single query), chunked prefill over a
// cached prefix (queries at kv_len - q_len .. kv_len - 1), GQA 1 / 4 / 8, head_dim 64 / 128 / 256.
TEST(GpuAttention, PrefillTensorCoreShapes) {
  FATHOM_REQUIRE_GPU();
  for (int D : {64, 128, 256}) {
    run_case({4, 4, D, {{200, 200}}});                                // g = 1, 3 x 64 + 8 rows
    run_case({8, 2, D, {{300, 300}, {65, 65}, {1, 1}, {129, 129}}});  // g = 4, varlen
    run_case({16, 2, D, {{1000, 100}, {513, 64}, {77, 13}}});         // g = 8, chunked
  }
}

// Masks and cache pages: sliding windows (whole prompt and chunked; tiles fully outside skipped),
// non-causal, softcap, and block sizes 1, 7 and 33 (a 64-key tile spans many pages, pages
// straddle tiles).
TEST(GpuAttention, PrefillTensorCoreMasksAndBlockSizes) {
  FATHOM_REQUIRE_GPU();
  AttnCase w{8, 2, 128, {{500, 300}, {700, 64}}};
  w.window = 100;
  run_case(w);
  AttnCase w64{4, 1, 64, {{333, 333}}};
  w64.window = 64;
  run_case(w64);
  AttnCase gemma{4, 1, 256, {{400, 400}, {150, 50}}};  // gemma-style: window + softcap, D 256
  gemma.window = 77;
  gemma.softcap = 30.0f;
  run_case(gemma);
  AttnCase sc{8, 8, 128, {{257, 257}}};
  sc.softcap = 20.0f;
  run_case(sc);
  AttnCase nc{4, 2, 64, {{150, 150}, {90, 20}}};
  nc.causal = false;
  run_case(nc);
  AttnCase nc256{4, 4, 256, {{100, 70}}};
  nc256.causal = false;
  nc256.block_size = 33;
  run_case(nc256);
  AttnCase b7{8, 2, 128, {{300, 300}, {200, 37}}};
  b7.block_size = 7;
  run_case(b7);
  AttnCase b1{4, 1, 64, {{130, 130}}};
  b1.block_size = 1;
  run_case(b1);
  AttnCase b7d{4, 2, 64, {{50, 1}, {3000, 1}}};  // decode over odd pages too
  b7d.block_size = 7;
  run_case(b7d);
}

// The A/B variants of launch_attention's prefill (FATHOM_ATTN_PREFILL; the default is 8 warps at
// D 128 / 256 and 4 warps at D 64): 4 warps (64 query rows per block) at 3 and at 2 blocks per SM,
// 8 warps everywhere, and the scalar fp32 kernel, with an odd block size too.
TEST(GpuAttention, PrefillVariants) {
  FATHOM_REQUIRE_GPU();
  for (const char* v : {"w4", "b2", "w8", "scalar"}) {
    SCOPED_TRACE(v);
    PrefillVariant env(v);
    for (int D : {64, 128, 256}) run_case({8, 2, D, {{300, 300}, {129, 129}, {500, 70}}});
    AttnCase w{8, 4, 128, {{400, 400}}};
    w.window = 100;
    w.block_size = 7;
    run_case(w);
  }
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

// ---- bench -------------------------------------------------------------------------------------

// One causal sequence of N tokens (whole prompt, queries = keys), llama3-8b's attention shape
// (32 query heads, 8 kv heads, D 128, 16-token pages), the last 512-token chunk of a 4096-token
// prompt (what fathom bench pp4096 runs per layer, ubatch 512), and D 64 / 256 at 4096. Per kernel variant: median of 15
// launches timed with CUDA events (after 3 warm-up launches), TFLOP/s on the visible pairs,
// 4 D n_head sum_i (keys visible to query i) = 4 D n_head N (N + 1) / 2 for a whole prompt.
// References (H100 SXM, causal, D 128, forward): cuDNN 464 / 548 / 617 TFLOP/s at 4k / 8k / 16k,
// FlashAttention-2 244 / 305 / 326.
TEST(GpuAttention, DISABLED_BenchPrefill) {
  FATHOM_REQUIRE_GPU();
  const int bs = 16;
  struct Shape {
    int kv, q, H, Hkv, D;
  };
  // The rows (D 128, 32/8 heads), the pp4096 chunk, and D 64 / 256 at 4096 (same flops).
  const Shape shapes[] = {{4096, 4096, 32, 8, 128}, {8192, 8192, 32, 8, 128},
                          {16384, 16384, 32, 8, 128}, {4096, 512, 32, 8, 128},
                          {4096, 4096, 64, 8, 64}, {4096, 4096, 16, 8, 256}};
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto rnd = [&]() {  // xorshift64*, uniform in [-1.7, 1.7) (unit variance)
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double((state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 - 0.5) * 3.464;
  };
  std::printf("bench prefill attention: H200, block 16, causal\n");
  for (const Shape& sh : shapes) {
    const int H = sh.H, Hkv = sh.Hkv, D = sh.D;
    const int nb = (sh.kv + bs - 1) / bs;
    std::vector<uint16_t> kc(size_t(nb) * Hkv * bs * D), vc(kc.size());
    for (auto& x : kc) x = fp32_to_fp16(float(rnd()));
    for (auto& x : vc) x = fp32_to_fp16(float(rnd()));
    std::vector<float> q(size_t(sh.q) * H * D);
    for (auto& x : q) x = float(rnd());
    std::vector<int32_t> table(nb), pos(sh.q), start = {0, sh.q}, len = {sh.kv};
    std::iota(table.begin(), table.end(), 0);
    for (int i = 0; i < sh.q; ++i) pos[i] = sh.kv - sh.q + i;
    DeviceBuffer<float> d_q(q), d_out(q.size()), d_ref(q.size());
    DeviceBuffer<uint16_t> d_k(kc), d_v(vc);
    DeviceBuffer<int32_t> d_pos(pos), d_start(start), d_len(len), d_table(table);
    cuda::AttentionParams p;
    p.q = d_q.get();
    p.q_pos = d_pos.get();
    p.q_seq_start = d_start.get();
    p.kv_len = d_len.get();
    p.block_table = d_table.get();
    p.max_blocks_per_seq = nb;
    p.k_cache = d_k.get();
    p.v_cache = d_v.get();
    p.block_size = bs;
    p.n_seqs = 1;
    p.n_tokens = sh.q;
    p.n_head = H;
    p.n_head_kv = Hkv;
    p.head_dim = D;
    p.max_q_len = sh.q;
    p.max_kv_len = sh.kv;
    double pairs = 0.0;
    for (int i = 0; i < sh.q; ++i) pairs += double(pos[i]) + 1.0;
    const double flops = 4.0 * D * H * pairs;
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<float> ref;
    for (const char* v : {"", "w4", "b2", "w8", "scalar"}) {
      if (std::string(v) == "scalar" && (sh.q > 4096 || D != 128)) continue;  // ~0.1 s a launch at 16k
      PrefillVariant env(*v ? v : nullptr);
      p.out = d_out.get();
      d_out.poison();
      std::vector<float> ms;
      for (int r = 0; r < 18; ++r) {
        CUDA_CHECK(cudaEventRecord(e0));
        cuda::launch_attention(p, nullptr);
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float t = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        if (r >= 3) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const std::vector<float> got = d_out.download();
      double diff = 0.0;
      bool finite = true;
      for (float x : got) finite = finite && std::isfinite(x);
      if (ref.empty()) ref = got;
      for (size_t i = 0; i < got.size(); ++i) diff = std::max(diff, double(std::fabs(got[i] - ref[i])));
      std::printf("bench prefill D %3d heads %2d/%d kv %6d q %6d variant %-6s  %8.3f ms  %6.1f TFLOP/s"
                  "  (min %.3f max %.3f ms)  max|out - default| %.2e%s\n",
                  D, H, Hkv, sh.kv, sh.q, *v ? v : "default", med, flops / med * 1e-9, ms.front(), ms.back(), diff,
                  finite ? "" : "  NON-FINITE");
      EXPECT_TRUE(finite);
      EXPECT_LT(diff, 2e-2);
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
  }
}

}  // namespace
}  // namespace fathom::test

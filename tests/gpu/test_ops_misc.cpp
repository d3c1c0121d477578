// GPU embedding, RMS norm, RoPE + paged KV write, gated activations, soft-cap, argmax and
// sampling against their CPU twins (include/fathom/cpu_ops.h, include/fathom/sampler.h).
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
#include "fathom/sampler.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<double> rel_tol(const std::vector<float>& want, double rel, double abs_floor) {
  std::vector<double> t(want.size());
  for (size_t i = 0; i < want.size(); ++i) t[i] = rel * std::fabs(want[i]) + abs_floor;
  return t;
}

// Embedding: the GPU dequantizes with the same fp32 formulas as the CPU, so the only freedom is
// FMA contraction in d * q - m: a few ulps. tol = 2^-20 relative + 1e-7. Q2_K and Q3_K leave no
// such freedom (quant_blocks.cuh spells out Q2_K's two roundings; Q3_K is two products): exact.
TEST(GpuOps, EmbeddingEveryType) {
  FATHOM_REQUIRE_GPU();
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                            GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                            GgmlType::Q6_K};
  const int64_t n_vocab = 111, n_embd = 768;
  const std::vector<int32_t> tokens = {0, 110, 5, 5, 64, 99, 1};
  for (GgmlType type : types) {
    const std::string name = std::string("embedding(type=") + ggml_type_name(type) + ",vocab=111,n_embd=768,n_tokens=7)";
    SCOPED_TRACE(name);
    const size_t rb = ggml_row_bytes(type, n_embd);
    const std::vector<float> wf = random_floats(size_t(n_vocab * n_embd), 11u + uint32_t(type));
    std::vector<uint8_t> wq(rb * n_vocab);
    for (int64_t r = 0; r < n_vocab; ++r) quantize_row(type, wf.data() + r * n_embd, wq.data() + r * rb, n_embd);
    std::vector<float> want(tokens.size() * n_embd);
    cpu::embedding(type, wq.data(), n_vocab, n_embd, tokens.data(), int64_t(tokens.size()), want.data());
    const float scale = std::sqrt(float(n_embd));
    for (float& x : want) x *= scale;
    DeviceBuffer<uint8_t> d_w(wq);
    DeviceBuffer<int32_t> d_tok(tokens);
    DeviceBuffer<float> d_out(want.size());
    d_out.poison();
    cuda::EmbeddingParams p;
    p.type = type;
    p.tok_embd = d_w.get();
    p.n_vocab = n_vocab;
    p.n_embd = n_embd;
    p.tokens = d_tok.get();
    p.n_tokens = int64_t(tokens.size());
    p.scale = scale;
    p.out = d_out.get();
    cuda::launch_embedding(p, nullptr);
    const bool exact = type == GgmlType::Q2_K || type == GgmlType::Q3_K;
    FATHOM_EXPECT_CLOSE(name, d_out.download(), to_double(want),
                        exact ? rel_tol(want, 0.0, 0.0) : rel_tol(want, std::ldexp(1.0, -20), 1e-6));
  }
}

// RMS norm: fp32 sum of squares in another order; relative error of the mean ~ n * 2^-24 worst,
// so tol = 1e-5 relative (n <= 5000) + 1e-6.
TEST(GpuOps, RmsNormWithResidualAndPerHead) {
  FATHOM_REQUIRE_GPU();
  for (int64_t n : {111, 500, 640, 4096}) {
    for (bool with_res : {false, true}) {
      const int64_t rows = 5;
      const std::string name = "rms_norm(rows=5,n=" + std::to_string(n) + (with_res ? ",residual)" : ")");
      SCOPED_TRACE(name);
      std::vector<float> x = random_floats(size_t(rows * n), uint32_t(n), 3.0f);
      const std::vector<float> res = random_floats(x.size(), uint32_t(n) + 1);
      const std::vector<float> w = random_floats(size_t(n), uint32_t(n) + 2);
      std::vector<float> x_after = x;
      if (with_res) cpu::add(x.data(), res.data(), x_after.data(), int64_t(x.size()));
      std::vector<float> want(x.size());
      cpu::rms_norm(x_after.data(), w.data(), want.data(), rows, n, 1e-6f);
      DeviceBuffer<float> d_x(x), d_res(res), d_w(w), d_out(x.size());
      d_out.poison();
      cuda::RmsNormParams p;
      p.x = d_x.get();
      p.residual = with_res ? d_res.get() : nullptr;
      p.w = d_w.get();
      p.out = d_out.get();
      p.n_rows = rows;
      p.n = n;
      p.eps = 1e-6f;
      cuda::launch_rms_norm(p, nullptr);
      FATHOM_EXPECT_CLOSE(name, d_out.download(), to_double(want), rel_tol(want, 1e-5, 1e-6));
      FATHOM_EXPECT_CLOSE(name + " x", d_x.download(), to_double(x_after), rel_tol(x_after, 0.0, 0.0));
    }
  }
  // Per-head Q norm in place: n_rows = n_tokens * n_head, n = head_dim.
  const int64_t rows = 3 * 4, n = 256;
  std::vector<float> x = random_floats(size_t(rows * n), 77u);
  const std::vector<float> w = random_floats(size_t(n), 78u);
  std::vector<float> want(x.size());
  cpu::rms_norm(x.data(), w.data(), want.data(), rows, n, 1e-6f);
  DeviceBuffer<float> d_x(x), d_w(w);
  cuda::RmsNormParams p;
  p.x = d_x.get();
  p.w = d_w.get();
  p.out = d_x.get();
  p.n_rows = rows;
  p.n = n;
  p.eps = 1e-6f;
  cuda::launch_rms_norm(p, nullptr);
  FATHOM_EXPECT_CLOSE("rms_norm(per_head,rows=12,n=256,in_place)", d_x.download(), to_double(want),
                      rel_tol(want, 1e-5, 1e-6));
}

// Every launch geometry of rms_norm.cu: one warp per row (n <= 512, V = 1, 2, 4 float4 per lane,
// a last block with rows past the end), the whole block per row (V = 1 ... 16, n up to 16384), and
// the scalar kernel (n % 4 != 0, n > 16384, a row pointer not 16-byte aligned); one row (batch-1
// decode) and several, with and without residual and weight. Tolerance as above (n <= 16400:
// 3e-5 relative).
TEST(GpuOps, RmsNormLaunchGeometries) {
  FATHOM_REQUIRE_GPU();
  struct Case { int64_t rows, n; bool res, w; int offset; };
  const Case cases[] = {{1, 4096, false, true, 0},  {1, 4096, true, true, 0},   {9, 128, false, true, 0},
                        {17, 132, true, true, 0},   {3, 260, false, false, 0},  {11, 512, true, true, 0},
                        {2, 516, true, true, 0},    {1, 2048, false, true, 0},  {3, 5120, true, true, 0},
                        {1, 8192, true, true, 0},   {2, 16384, true, true, 0},  {1, 16388, true, true, 0},
                        {2, 4098, true, true, 0},   {2, 4096, true, true, 1},   {40, 128, false, true, 0}};
  for (const Case& c : cases) {
    const std::string name = "rms_norm(rows=" + std::to_string(c.rows) + ",n=" + std::to_string(c.n) +
                             (c.res ? ",residual" : "") + (c.w ? "" : ",no_weight") +
                             (c.offset ? ",unaligned" : "") + ")";
    SCOPED_TRACE(name);
    const size_t elems = size_t(c.rows * c.n);
    std::vector<float> x = random_floats(elems, uint32_t(c.n + c.rows), 3.0f);
    const std::vector<float> res = random_floats(elems, uint32_t(c.n) + 5);
    const std::vector<float> w = random_floats(size_t(c.n), uint32_t(c.n) + 6);
    std::vector<float> x_after = x;
    if (c.res) cpu::add(x.data(), res.data(), x_after.data(), int64_t(elems));
    const std::vector<float> ones(size_t(c.n), 1.0f);
    std::vector<float> want(elems);
    cpu::rms_norm(x_after.data(), c.w ? w.data() : ones.data(), want.data(), c.rows, c.n, 1e-5f);
    // offset: every buffer starts one float past a 16-byte boundary.
    std::vector<float> xo(c.offset + elems), ro(c.offset + elems), wo(c.offset + size_t(c.n));
    std::copy(x.begin(), x.end(), xo.begin() + c.offset);
    std::copy(res.begin(), res.end(), ro.begin() + c.offset);
    std::copy(w.begin(), w.end(), wo.begin() + c.offset);
    DeviceBuffer<float> d_x(xo), d_res(ro), d_w(wo), d_out(c.offset + elems);
    d_out.poison();
    cuda::RmsNormParams p;
    p.x = d_x.get() + c.offset;
    p.residual = c.res ? d_res.get() + c.offset : nullptr;
    p.w = c.w ? d_w.get() + c.offset : nullptr;
    p.out = d_out.get() + c.offset;
    p.n_rows = c.rows;
    p.n = c.n;
    p.eps = 1e-5f;
    cuda::launch_rms_norm(p, nullptr);
    std::vector<float> got = d_out.download(), got_x = d_x.download();
    got.erase(got.begin(), got.begin() + c.offset);
    got_x.erase(got_x.begin(), got_x.begin() + c.offset);
    FATHOM_EXPECT_CLOSE(name, got, to_double(want), rel_tol(want, 3e-5, 1e-6));
    FATHOM_EXPECT_CLOSE(name + " x", got_x, to_double(x_after), rel_tol(x_after, 0.0, 0.0));
  }
}

// RoPE: both sides compute theta in double and round cos/sin to float, then do the same fp32
// rotation: tol 1e-5 relative + 1e-5 (the GPU's double pow/sincos differ from libm by ulps,
// times positions up to 5000). The cache holds fp16 of the rotated k and of v: compared to the
// CPU's fp32 values rounded to fp16, within one fp16 ulp (2^-10 relative).
struct RopeCase {
  RopeType type;
  int head_dim, n_rot;
  bool factors;
  int n_tokens = 19, n_head = 4, n_kv = 2;
  bool with_q = true;
  int pos0 = 1;  // position of token 0; token t is at pos0 + 263 t
};

void run_rope_case(const RopeCase& c) {
  const int n_tokens = c.n_tokens, n_head = c.n_head, n_kv = c.n_kv, block = 16;
  {
    const std::string name = std::string("rope_kv(type=") + (c.type == RopeType::NORM ? "NORM" : "NEOX") +
                             ",head_dim=" + std::to_string(c.head_dim) + ",n_rot=" + std::to_string(c.n_rot) +
                             ",tokens=" + std::to_string(n_tokens) + ",pos0=" + std::to_string(c.pos0) + ",heads=" + std::to_string(n_head) + "/" +
                             std::to_string(n_kv) + (c.with_q ? "" : ",no_q") + (c.factors ? ",freq_factors)" : ")");
    SCOPED_TRACE(name);
    const int D = c.head_dim;
    std::vector<float> q = random_floats(size_t(n_tokens) * n_head * D, 5u + uint32_t(D));
    std::vector<float> k = random_floats(size_t(n_tokens) * n_kv * D, 6u + uint32_t(D));
    const std::vector<float> v = random_floats(k.size(), 7u + uint32_t(D));
    std::vector<int32_t> pos(n_tokens);
    for (int t = 0; t < n_tokens; ++t) pos[t] = c.pos0 + t * 263;
    std::vector<float> ff(c.n_rot / 2);
    for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + float(i % 7);
    // Slots: tokens scattered over 3 physical blocks of 4, token 5 skipped (slot -1).
    std::vector<int32_t> slots(n_tokens);
    for (int t = 0; t < n_tokens; ++t) slots[t] = t == 5 ? -1 : ((t / block) == 0 ? 2 : 0) * block + t % block;
    cpu::RopeParams rp;
    rp.type = c.type;
    rp.n_rot = c.n_rot;
    rp.freq_base = 10000.0f;
    rp.freq_scale = 0.5f;
    rp.freq_factors = c.factors ? ff.data() : nullptr;
    std::vector<float> q_want = q, k_want = k;
    cpu::rope(q_want.data(), pos.data(), n_tokens, n_head, D, rp);
    cpu::rope(k_want.data(), pos.data(), n_tokens, n_kv, D, rp);

    const size_t cache_elems = size_t(4) * n_kv * block * D;
    DeviceBuffer<float> d_q(q), d_k(k), d_v(v), d_ff(ff);
    DeviceBuffer<int32_t> d_pos(pos), d_slots(slots);
    DeviceBuffer<uint16_t> d_kc(std::vector<uint16_t>(cache_elems, 0x7E00)),
        d_vc(std::vector<uint16_t>(cache_elems, 0x7E00));
    cuda::RopeKvParams p;
    p.type = c.type;
    p.n_rot = c.n_rot;
    p.freq_base = 10000.0f;
    p.freq_scale = 0.5f;
    p.freq_factors = c.factors ? d_ff.get() : nullptr;
    p.pos = d_pos.get();
    p.n_tokens = n_tokens;
    p.n_head = n_head;
    p.n_head_kv = n_kv;
    p.head_dim = D;
    p.q = c.with_q ? d_q.get() : nullptr;
    p.k = d_k.get();
    p.v = d_v.get();
    p.k_cache = d_kc.get();
    p.v_cache = d_vc.get();
    p.slot_mapping = d_slots.get();
    p.block_size = block;
    cuda::launch_rope_kv(p, nullptr);
    if (c.with_q) {
      FATHOM_EXPECT_CLOSE(name + " q", d_q.download(), to_double(q_want), rel_tol(q_want, 1e-5, 1e-5));
    } else {
      FATHOM_EXPECT_CLOSE(name + " q untouched", d_q.download(), to_double(q), rel_tol(q, 0.0, 0.0));
    }
    FATHOM_EXPECT_CLOSE(name + " k", d_k.download(), to_double(k_want), rel_tol(k_want, 1e-5, 1e-5));
    const std::vector<uint16_t> kc = d_kc.download(), vc = d_vc.download();
    std::vector<float> kc_got, kc_want, vc_got, vc_want;
    for (int t = 0; t < n_tokens; ++t) {
      for (int h = 0; h < n_kv; ++h)
        for (int d = 0; d < D; ++d) {
          const size_t src = (size_t(t) * n_kv + h) * D + d;
          if (slots[t] < 0) continue;
          const size_t at = ((size_t(slots[t] / block) * n_kv + h) * block + slots[t] % block) * D + d;
          kc_got.push_back(fp16_to_fp32(kc[at]));
          kc_want.push_back(fp16_to_fp32(fp32_to_fp16(k_want[src])));
          vc_got.push_back(fp16_to_fp32(vc[at]));
          vc_want.push_back(fp16_to_fp32(fp32_to_fp16(v[src])));
        }
    }
    FATHOM_EXPECT_CLOSE(name + " k_cache", kc_got, to_double(kc_want), rel_tol(kc_want, std::ldexp(1.0, -10), 1e-4));
    FATHOM_EXPECT_CLOSE(name + " v_cache", vc_got, to_double(vc_want), rel_tol(vc_want, 0.0, 0.0));
    // The skipped token's slot (block 2, offset 5) is untouched.
    if (n_tokens > 5) EXPECT_EQ(kc[((size_t(2) * n_kv) * block + 5) * D], 0x7E00);
  }
}

TEST(GpuOps, RopeNormNeoxWithPagedKvWrite) {
  FATHOM_REQUIRE_GPU();
  run_rope_case({RopeType::NORM, 128, 128, false});
  run_rope_case({RopeType::NEOX, 256, 256, false});
  run_rope_case({RopeType::NORM, 64, 32, true});
  run_rope_case({RopeType::NEOX, 128, 64, true});
}

// rope_kv_kernel's geometry (4 warps per block, one warp per (token, head), q heads first):
// batch 1 at the llama3-8b shape (32 + 8 heads: 10 full blocks), head counts that leave a block
// partly empty (5 + 1, 3 + 3), GQA 1, k only (q nullptr), head_dim 512 (8 pairs and 16 v elements
// per lane), n_rot < head_dim with both pairings; the batch-1 token at position 100000.
TEST(GpuOps, RopeHeadLaunchGeometries) {
  FATHOM_REQUIRE_GPU();
  // {type, head_dim, n_rot, freq factors, n_tokens, n_head, n_kv, with_q, pos0}
  const RopeCase cases[] = {
      {RopeType::NORM, 128, 128, true, 1, 32, 8, true, 100000},  // llama3-8b, batch 1
      {RopeType::NEOX, 64, 64, false, 1, 5, 1},
      {RopeType::NORM, 64, 48, false, 7, 3, 3},
      {RopeType::NEOX, 128, 96, true, 3, 4, 2, false},  // k only
      {RopeType::NORM, 512, 512, false, 2, 2, 1},
      {RopeType::NEOX, 512, 256, false, 20, 6, 2},
  };
  for (const RopeCase& c : cases) run_rope_case(c);
}

// Activations: expf/tanhf on the device are within 2 ulp of libm: tol 1e-6 relative + 1e-7.
TEST(GpuOps, SwigluGegluSoftcap) {
  FATHOM_REQUIRE_GPU();
  const int64_t n_tokens = 3, n = 500;
  const std::vector<float> g = random_floats(size_t(n_tokens * n), 1u, 3.0f);
  const std::vector<float> u = random_floats(g.size(), 2u);
  for (auto kind : {cuda::GluKind::SWIGLU, cuda::GluKind::GEGLU}) {
    const std::string name = kind == cuda::GluKind::SWIGLU ? "swiglu(n=3x500)" : "geglu(n=3x500)";
    std::vector<float> want(g.size());
    if (kind == cuda::GluKind::SWIGLU) cpu::swiglu(g.data(), u.data(), want.data(), int64_t(g.size()));
    else cpu::geglu(g.data(), u.data(), want.data(), int64_t(g.size()));
    DeviceBuffer<float> d_g(g), d_u(u), d_out(g.size());
    d_out.poison();
    cuda::GluParams p;
    p.kind = kind;
    p.gate = d_g.get();
    p.up = d_u.get();
    p.out = d_out.get();
    p.n_tokens = n_tokens;
    p.n = n;
    cuda::launch_glu(p, nullptr);
    FATHOM_EXPECT_CLOSE(name, d_out.download(), to_double(want), rel_tol(want, 1e-5, 1e-6));
  }
  std::vector<float> x = random_floats(1111, 3u, 40.0f), want = x;
  cpu::softcap(want.data(), int64_t(want.size()), 30.0f);
  DeviceBuffer<float> d_x(x);
  cuda::SoftcapParams sp;
  sp.x = d_x.get();
  sp.n = int64_t(x.size());
  sp.cap = 30.0f;
  cuda::launch_softcap(sp, nullptr);
  FATHOM_EXPECT_CLOSE("softcap(n=1111,cap=30)", d_x.download(), to_double(want), rel_tol(want, 1e-5, 1e-6));
}

// Greedy must be token-identical to the CPU sampler, ties (lowest id) included.
TEST(GpuOps, ArgmaxMatchesCpuIncludingTies) {
  FATHOM_REQUIRE_GPU();
  for (int64_t n_vocab : {1, 7, 1000, 262144 + 7}) {
    const int64_t rows = 4;
    std::vector<float> l = random_floats(size_t(rows * n_vocab), uint32_t(n_vocab));
    if (n_vocab > 100) {
      // Row 1: a tie between two far-apart ids; row 2: all equal; row 3: max at the last id.
      l[1 * n_vocab + 3] = 100.0f;
      l[1 * n_vocab + n_vocab - 2] = 100.0f;
      std::fill(l.begin() + 2 * n_vocab, l.begin() + 3 * n_vocab, -1.5f);
      l[3 * n_vocab + n_vocab - 1] = 1e30f;
    }
    DeviceBuffer<float> d_l(l);
    DeviceBuffer<int32_t> d_out(static_cast<size_t>(rows)), d_out2(static_cast<size_t>(rows));
    DeviceBuffer<uint8_t> ws(cuda::argmax_workspace_bytes(rows, n_vocab));
    cuda::ArgmaxParams p;
    p.logits = d_l.get();
    p.n_rows = rows;
    p.n_vocab = n_vocab;
    p.out_tokens = d_out.get();
    p.workspace = ws.get();
    cuda::launch_argmax(p, nullptr);
    cuda::SampleParams sp;  // temp 0 -> the sampling kernel's own greedy path
    sp.logits = d_l.get();
    sp.n_rows = rows;
    sp.n_vocab = n_vocab;
    sp.temp = 0.0f;
    sp.out_tokens = d_out2.get();
    cuda::launch_sample(sp, nullptr);
    const std::vector<int32_t> got = d_out.download(), got2 = d_out2.download();
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t want = sampling::argmax(l.data() + r * n_vocab, n_vocab);
      EXPECT_EQ(got[r], want) << "argmax(n_vocab=" << n_vocab << ",row=" << r << ")";
      EXPECT_EQ(got2[r], want) << "sample(temp=0,n_vocab=" << n_vocab << ",row=" << r << ")";
    }
  }
}

// Stochastic sampling: drawn tokens must be in the CPU pipeline's kept set, and over many
// draws (rows sharing one logits vector, different RNG counters) the frequencies must match the
// CPU's kept probabilities within 5 standard deviations (binomial) for every token expected
// at least 10 times.
TEST(GpuOps, SampleMatchesCpuDistribution) {
  FATHOM_REQUIRE_GPU();
  struct Case { float temp; int top_k; float top_p, min_p; };
  const Case cases[] = {{0.8f, 40, 0.95f, 0.05f}, {1.0f, 0, 0.9f, 0.0f}, {1.5f, 5, 1.0f, 0.0f},
                        {0.7f, 0, 1.0f, 0.1f}};
  const int64_t n_vocab = 16000 + 11, draws = 4096;
  std::vector<float> base = random_floats(size_t(n_vocab), 99u, 2.0f);
  for (int i = 0; i < 20; ++i) base[size_t(i) * 700 + 3] = 6.0f + 0.25f * float(i);  // a head of likely tokens
  for (const Case& c : cases) {
    const std::string name = "sample(temp=" + std::to_string(c.temp) + ",top_k=" + std::to_string(c.top_k) +
                             ",top_p=" + std::to_string(c.top_p) + ",min_p=" + std::to_string(c.min_p) + ")";
    SCOPED_TRACE(name);
    std::vector<TokenCandidate> cands = sampling::top_k(base.data(), n_vocab, c.top_k);
    sampling::apply_temperature(cands, c.temp);
    sampling::softmax(cands);
    sampling::top_p(cands, c.top_p);
    sampling::min_p(cands, c.min_p);
    double kept_mass = 0.0;
    for (const auto& t : cands) kept_mass += t.p;
    std::vector<double> prob(size_t(n_vocab), 0.0);
    for (const auto& t : cands) prob[size_t(t.id)] = t.p / kept_mass;

    std::vector<float> l(size_t(draws * n_vocab));
    for (int64_t r = 0; r < draws; ++r) std::copy(base.begin(), base.end(), l.begin() + r * n_vocab);
    std::vector<uint64_t> counters(static_cast<size_t>(draws));
    std::iota(counters.begin(), counters.end(), uint64_t(1000));
    DeviceBuffer<float> d_l(l);
    DeviceBuffer<uint64_t> d_ctr(counters);
    DeviceBuffer<int32_t> d_out(static_cast<size_t>(draws));
    cuda::SampleParams p;
    p.logits = d_l.get();
    p.n_rows = draws;
    p.n_vocab = n_vocab;
    p.temp = c.temp;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.seed = 1234;
    p.rng_counter = d_ctr.get();
    p.out_tokens = d_out.get();
    cuda::launch_sample(p, nullptr);
    const std::vector<int32_t> got = d_out.download();
    const std::vector<uint64_t> ctr_after = d_ctr.download();
    EXPECT_EQ(ctr_after[0], counters[0] + 1) << "the RNG counter advances once per draw";
    std::vector<int64_t> count(size_t(n_vocab), 0);
    int outside = 0;
    for (int32_t t : got) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, n_vocab);
      if (prob[size_t(t)] == 0.0) ++outside;
      ++count[size_t(t)];
    }
    // Borderline tokens of top-p can differ (float vs double mass sums): allow a trace.
    EXPECT_LE(outside, draws / 100) << name << ": tokens outside the CPU kept set (" << cands.size() << " kept)";
    double worst_z = 0.0;
    int64_t worst_id = -1;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double pr = prob[size_t(i)];
      if (draws * pr < 10.0) continue;  // too rare for a normal approximation
      const double sd = std::sqrt(draws * pr * (1 - pr)) + 1e-9;
      const double z = std::fabs(double(count[size_t(i)]) - draws * pr) / sd;
      if (z > worst_z) { worst_z = z; worst_id = i; }
    }
    EXPECT_LT(worst_z, 5.0) << name << ": token " << worst_id << " drawn " << (worst_id >= 0 ? count[size_t(worst_id)] : 0)
                            << " times, expected " << (worst_id >= 0 ? draws * prob[size_t(worst_id)] : 0);
  }
}

}  // namespace
}  // namespace fathom::test

// The fp32 CPU reference ops against hand-computed values and against their defining properties.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"
#include "fathom/quant.h"

namespace fathom {
namespace {

std::vector<float> random_vector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Largest |a - b| / (|b| + floor), with the index, for failure messages.
struct WorstError {
  double rel = 0.0;
  int64_t index = -1;
};
WorstError worst_error(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  WorstError w;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(static_cast<double>(a[i]) - b[i]) / (std::fabs(b[i]) + floor);
    if (e > w.rel) w = {e, static_cast<int64_t>(i)};
  }
  return w;
}

#define EXPECT_CLOSE_VEC(a, b, tol, floor)                                                   \
  do {                                                                                       \
    const WorstError w_ = worst_error((a), (b), (floor));                                    \
    EXPECT_LE(w_.rel, (tol)) << "worst element " << w_.index << ": " << (a)[w_.index]       \
                             << " vs expected " << (b)[w_.index];                            \
  } while (0)

// A GgufTensorInfo over caller memory, so ops taking a WeightRef can be tested without a file.
struct OwnedWeight {
  GgufTensorInfo info;
  std::vector<uint8_t> bytes;
  WeightRef ref() const {
    WeightRef w;
    w.info = &info;
    return w;
  }
};
OwnedWeight make_weight(GgmlType type, const std::vector<float>& values, int64_t rows, int64_t cols) {
  OwnedWeight w;
  w.info.name = "test.weight";
  w.info.type = type;
  w.info.n_dims = 2;
  w.info.ne[0] = cols;
  w.info.ne[1] = rows;
  const size_t row_bytes = ggml_row_bytes(type, cols);
  w.bytes.resize(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, values.data() + r * cols, w.bytes.data() + r * row_bytes, cols);
  }
  w.info.data = w.bytes.data();
  w.info.nbytes = w.bytes.size();
  return w;
}

// ---- rms_norm -----------------------------------------------------------------------------------

TEST(CpuOps, RmsNormHandComputed) {
  // x = (3, 4): mean(x^2) = 12.5, 1/sqrt(12.5) = 0.28284271.
  const std::vector<float> x = {3.0f, 4.0f};
  const std::vector<float> w = {2.0f, 0.5f};
  std::vector<float> out(2);
  cpu::rms_norm(x.data(), w.data(), out.data(), 1, 2, 0.0f);
  EXPECT_NEAR(out[0], 3.0 * 2.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[1], 4.0 * 0.5 / std::sqrt(12.5), 1e-6);
  cpu::rms_norm(x.data(), nullptr, out.data(), 1, 2, 0.5f);  // eps enters under the root
  EXPECT_NEAR(out[0], 3.0 / std::sqrt(13.0), 1e-6);
}

TEST(CpuOps, RmsNormRowsAreIndependentAndUnitRms) {
  const int64_t rows = 5, n = 111;
  std::vector<float> x = random_vector(rows * n, 1, 3.0f), out(x.size());
  cpu::rms_norm(x.data(), nullptr, out.data(), rows, n, 1e-6f);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += out[r * n + i] * out[r * n + i];
    EXPECT_NEAR(ss / n, 1.0, 1e-5) << "row " << r;
  }
  cpu::rms_norm(x.data(), nullptr, x.data(), rows, n, 1e-6f);  // in place
  EXPECT_CLOSE_VEC(x, out, 0.0, 1e-30);
}

// ---- elementwise ----------------------------------------------------------------------------------

TEST(CpuOps, ActivationsHandComputed) {
  EXPECT_NEAR(cpu::silu(0.0f), 0.0f, 0);
  EXPECT_NEAR(cpu::silu(1.0f), 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(cpu::silu(-2.0f), -2.0 / (1.0 + std::exp(2.0)), 1e-7);
  // gelu_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411920
  EXPECT_NEAR(cpu::gelu_tanh(1.0f), 0.841192, 1e-6);
  EXPECT_NEAR(cpu::gelu_tanh(-3.0f), -0.00363739, 1e-7);

  const std::vector<float> g = {1.0f, -2.0f, 0.5f}, u = {2.0f, 3.0f, -1.0f};
  std::vector<float> out(3);
  cpu::swiglu(g.data(), u.data(), out.data(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], cpu::silu(g[i]) * u[i], 1e-7);
  cpu::geglu(g.data(), u.data(), out.data(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], cpu::gelu_tanh(g[i]) * u[i], 1e-7);
}

TEST(CpuOps, SoftcapAddBiasScale) {
  std::vector<float> x = {0.0f, 30.0f, -1000.0f};
  cpu::softcap(x.data(), 3, 30.0f);
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_NEAR(x[1], 30.0 * std::tanh(1.0), 1e-5);
  EXPECT_NEAR(x[2], -30.0, 1e-5);  // bounded by the cap

  std::vector<float> y = {1, 2, 3, 4, 5, 6};
  const std::vector<float> b = {10, 20, 30};
  cpu::add_bias(y.data(), b.data(), 2, 3);
  EXPECT_EQ(y, (std::vector<float>{11, 22, 33, 14, 25, 36}));
  cpu::scale(y.data(), 6, 0.5f);
  EXPECT_EQ(y[0], 5.5f);
  std::vector<float> s(6);
  cpu::add(y.data(), y.data(), s.data(), 6);
  EXPECT_EQ(s[5], 36.0f);
}

TEST(CpuOps, SoftmaxHandComputedAndMasked) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 1000.0f, 1000.0f, -inf, -inf, -inf, -inf};
  cpu::softmax(x.data(), 3, 3);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(x[0], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(x[2], std::exp(3.0) / z, 1e-7);
  EXPECT_NEAR(x[3], 0.5, 1e-7);  // large logits: no overflow
  EXPECT_EQ(x[5], 0.0f);         // -inf -> 0
  for (int i = 6; i < 9; ++i) EXPECT_EQ(x[i], 0.0f) << "all-masked row";
}

// ---- embedding and matmul ---------------------------------------------------------------------

TEST(CpuOps, EmbeddingPicksRowsAndChecksRange) {
  const int64_t n_vocab = 7, n_embd = 64;
  const std::vector<float> table = random_vector(n_vocab * n_embd, 2);
  const OwnedWeight w = make_weight(GgmlType::F32, table, n_vocab, n_embd);
  const std::vector<int32_t> tokens = {3, 0, 6, 3};
  std::vector<float> out(tokens.size() * n_embd);
  cpu::embedding(w.ref(), tokens.data(), 4, out.data());
  for (size_t t = 0; t < tokens.size(); ++t) {
    for (int64_t i = 0; i < n_embd; ++i) {
      ASSERT_EQ(out[t * n_embd + i], table[tokens[t] * n_embd + i]) << "token " << t << " dim " << i;
    }
  }
  const int32_t bad = 7;
  EXPECT_THROW(cpu::embedding(w.ref(), &bad, 1, out.data()), Error);
}

TEST(CpuOps, MatmulF32HandComputed) {
  // W (2, 3) = [[1,2,3],[4,5,6]], x (2 tokens, 3) -> y (2, 2)
  const std::vector<float> wv = {1, 2, 3, 4, 5, 6};
  const std::vector<float> x = {1, 0, -1, 0.5f, 0.5f, 0.5f};
  std::vector<float> y(4);
  cpu::matmul(GgmlType::F32, wv.data(), 2, 3, x.data(), y.data(), 2, 1);
  EXPECT_EQ(y, (std::vector<float>{-2.0f, -2.0f, 3.0f, 7.5f}));
}

// Quantized weights: matmul must equal (dequantized W) @ x, for every thread count.
TEST(CpuOps, MatmulQuantizedEqualsDequantizedProduct) {
  const int64_t rows = 67, cols = 512, n_tokens = 3;
  const std::vector<float> wv = random_vector(rows * cols, 3, 0.05f);
  const std::vector<float> x = random_vector(n_tokens * cols, 4);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
    if (!can_quantize(type)) continue;
    const OwnedWeight w = make_weight(type, wv, rows, cols);
    std::vector<float> deq(rows * cols);
    cpu::dequantize_weight(w.ref(), deq.data());
    std::vector<float> want(n_tokens * rows);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (int64_t i = 0; i < cols; ++i) acc += static_cast<double>(deq[r * cols + i]) * x[t * cols + i];
        want[t * rows + r] = static_cast<float>(acc);
      }
    }
    for (int threads : {1, 4}) {
      std::vector<float> y(n_tokens * rows);
      cpu::matmul(w.ref(), x.data(), y.data(), n_tokens, threads);
      SCOPED_TRACE(std::string(ggml_type_name(type)) + " threads=" + std::to_string(threads));
      EXPECT_CLOSE_VEC(y, want, 1e-6, 1e-3);
    }
  }
}

// ---- rope -----------------------------------------------------------------------------------------

cpu::RopeParams rope_params(RopeType type, int64_t n_rot) {
  cpu::RopeParams p;
  p.type = type;
  p.n_rot = n_rot;
  p.freq_base = 10000.0f;
  return p;
}

TEST(CpuOps, RopePositionZeroIsIdentity) {
  for (RopeType type : {RopeType::NORM, RopeType::NEOX}) {
    const std::vector<float> x0 = random_vector(3 * 2 * 16, 5);
    std::vector<float> x = x0;
    const std::vector<int32_t> pos = {0, 0, 0};
    cpu::rope(x.data(), pos.data(), 3, 2, 16, rope_params(type, 16));
    EXPECT_CLOSE_VEC(x, x0, 0.0, 1e-30);
  }
}

TEST(CpuOps, RopePreservesPairNormsAndPassesUnrotatedDims) {
  const int64_t hd = 24, n_rot = 16, heads = 3;
  for (RopeType type : {RopeType::NORM, RopeType::NEOX}) {
    const std::vector<float> x0 = random_vector(heads * hd, 6);
    std::vector<float> x = x0;
    const int32_t pos = 37;
    cpu::rope(x.data(), &pos, 1, heads, hd, rope_params(type, n_rot));
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const int64_t a = h * hd + (type == RopeType::NORM ? 2 * i : i);
        const int64_t b = h * hd + (type == RopeType::NORM ? 2 * i + 1 : i + n_rot / 2);
        EXPECT_NEAR(std::hypot(x[a], x[b]), std::hypot(x0[a], x0[b]), 1e-5);
      }
      for (int64_t i = n_rot; i < hd; ++i) EXPECT_EQ(x[h * hd + i], x0[h * hd + i]);
    }
  }
}

TEST(CpuOps, RopeHandComputedAngles) {
  // head_dim 4, base 100: pair 0 turns by pos, pair 1 by pos / 100^(2/4) = pos / 10.
  cpu::RopeParams p = rope_params(RopeType::NORM, 4);
  p.freq_base = 100.0f;
  std::vector<float> x = {1, 0, 1, 0};
  const int32_t pos = 2;
  cpu::rope(x.data(), &pos, 1, 1, 4, p);
  EXPECT_NEAR(x[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[2], std::cos(0.2), 1e-6);
  EXPECT_NEAR(x[3], std::sin(0.2), 1e-6);
  // NEOX pairs (0, 2) and (1, 3).
  p.type = RopeType::NEOX;
  std::vector<float> y = {1, 1, 0, 0};
  cpu::rope(y.data(), &pos, 1, 1, 4, p);
  EXPECT_NEAR(y[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(y[2], std::sin(2.0), 1e-6);
  EXPECT_NEAR(y[1], std::cos(0.2), 1e-6);
  EXPECT_NEAR(y[3], std::sin(0.2), 1e-6);
  // Linear scaling by 4 and a frequency factor of 2 both slow the rotation.
  p.type = RopeType::NORM;
  p.freq_scale = 0.25f;
  const float factors[2] = {2.0f, 1.0f};
  p.freq_factors = factors;
  std::vector<float> z = {1, 0, 1, 0};
  cpu::rope(z.data(), &pos, 1, 1, 4, p);
  EXPECT_NEAR(z[1], std::sin(2.0 * 0.25 / 2.0), 1e-6);
  EXPECT_NEAR(z[3], std::sin(0.2 * 0.25), 1e-6);
}

// q.k after rope depends only on the position difference (the point of rotary embeddings).
TEST(CpuOps, RopeDotProductDependsOnRelativePosition) {
  for (RopeType type : {RopeType::NORM, RopeType::NEOX}) {
    const std::vector<float> q0 = random_vector(32, 7), k0 = random_vector(32, 8);
    auto rotated_dot = [&](int32_t pq, int32_t pk) {
      std::vector<float> q = q0, k = k0;
      cpu::rope(q.data(), &pq, 1, 1, 32, rope_params(type, 32));
      cpu::rope(k.data(), &pk, 1, 1, 32, rope_params(type, 32));
      double d = 0;
      for (int i = 0; i < 32; ++i) d += q[i] * k[i];
      return d;
    };
    EXPECT_NEAR(rotated_dot(10, 3), rotated_dot(107, 100), 1e-4);
  }
}

TEST(CpuOps, Llama3FrequencyFactors) {
  // Meta's reference: wavelengths shorter than orig_ctx/high_freq_factor keep factor 1, longer
  // than orig_ctx/low_freq_factor get `factor`, and the band between is interpolated.
  const int64_t n_rot = 128;
  std::vector<float> f(n_rot / 2);
  cpu::llama3_freq_factors(n_rot, 500000.0f, 8.0f, 1.0f, 4.0f, 8192.0f, f.data());
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[63], 8.0f);
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]) << "i=" << i;
}

// ---- attention ------------------------------------------------------------------------------------

// The definition, written out independently: softmax over visible keys of scale * q.k, then V.
std::vector<float> attention_by_definition(const std::vector<float>& q, const std::vector<int32_t>& q_pos,
                                           const std::vector<float>& k, const std::vector<float>& v,
                                           int64_t n_kv, const cpu::AttentionParams& p) {
  const int64_t n_q = static_cast<int64_t>(q_pos.size());
  std::vector<float> out(n_q * p.n_head * p.head_dim_v, 0.0f);
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t h = 0; h < p.n_head; ++h) {
      const int64_t g = h / (p.n_head / p.n_head_kv);
      std::vector<double> w;
      std::vector<int64_t> idx;
      for (int64_t j = 0; j < n_kv; ++j) {
        const bool causal_ok = !p.causal || j <= q_pos[i];
        const bool window_ok = p.sliding_window == 0 || q_pos[i] - j < p.sliding_window;
        if (!causal_ok || !window_ok) continue;
        double s = 0;
        for (int64_t d = 0; d < p.head_dim_k; ++d) {
          s += q[(i * p.n_head + h) * p.head_dim_k + d] * k[(j * p.n_head_kv + g) * p.head_dim_k + d];
        }
        s *= p.scale;
        if (p.softcap > 0) s = p.softcap * std::tanh(s / p.softcap);
        w.push_back(s);
        idx.push_back(j);
      }
      double mx = -1e300, z = 0;
      for (double s : w) mx = std::max(mx, s);
      for (double& s : w) z += (s = std::exp(s - mx));
      for (size_t m = 0; m < w.size(); ++m) {
        for (int64_t d = 0; d < p.head_dim_v; ++d) {
          out[(i * p.n_head + h) * p.head_dim_v + d] +=
              static_cast<float>(w[m] / z * v[(idx[m] * p.n_head_kv + g) * p.head_dim_v + d]);
        }
      }
    }
  }
  return out;
}

struct AttentionCase {
  int64_t n_head, n_head_kv, hd_k, hd_v, n_q, n_kv, window;
  float softcap;
  bool causal;
};

class CpuAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CpuAttention, MatchesExplicitSoftmax) {
  const AttentionCase c = GetParam();
  cpu::AttentionParams p;
  p.n_head = c.n_head;
  p.n_head_kv = c.n_head_kv;
  p.head_dim_k = c.hd_k;
  p.head_dim_v = c.hd_v;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.hd_k));
  p.softcap = c.softcap;
  p.causal = c.causal;
  p.sliding_window = c.window;
  const std::vector<float> q = random_vector(c.n_q * c.n_head * c.hd_k, 9, 2.0f);
  const std::vector<float> k = random_vector(c.n_kv * c.n_head_kv * c.hd_k, 10, 2.0f);
  const std::vector<float> v = random_vector(c.n_kv * c.n_head_kv * c.hd_v, 11);
  // The queries are the last n_q positions of the cache (a prefill continuing after n_kv - n_q).
  std::vector<int32_t> q_pos(c.n_q);
  for (int64_t i = 0; i < c.n_q; ++i) q_pos[i] = static_cast<int32_t>(c.n_kv - c.n_q + i);
  std::vector<float> out(c.n_q * c.n_head * c.hd_v);
  cpu::attention(q.data(), q_pos.data(), c.n_q, k.data(), v.data(), nullptr, c.n_kv, p, out.data());
  const std::vector<float> want = attention_by_definition(q, q_pos, k, v, c.n_kv, p);
  // The op rounds scores to fp32 before exp: relative error ~ |score| * 2^-24 per weight, scores
  // here reach ~10, so outputs (weighted means of unit-scale values) carry ~1e-6 absolute error.
  EXPECT_CLOSE_VEC(out, want, 1e-5, 1.0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuAttention,
    ::testing::Values(AttentionCase{1, 1, 8, 8, 1, 1, 0, 0.0f, true},
                      AttentionCase{4, 4, 16, 16, 5, 5, 0, 0.0f, true},      // MHA prefill
                      AttentionCase{8, 2, 16, 16, 3, 11, 0, 0.0f, true},     // GQA, continuation
                      AttentionCase{4, 1, 32, 24, 7, 7, 3, 0.0f, true},      // MQA, window, hd_v != hd_k
                      AttentionCase{2, 1, 16, 16, 1, 20, 4, 0.0f, true},     // decode step, window
                      AttentionCase{2, 2, 8, 8, 4, 4, 0, 5.0f, true},        // softcap
                      AttentionCase{2, 2, 8, 8, 4, 6, 0, 0.0f, false}));     // non-causal

TEST(CpuOps, AttentionMasks) {
  cpu::AttentionParams p;
  p.causal = true;
  EXPECT_TRUE(cpu::attention_visible(p, 5, 5));
  EXPECT_TRUE(cpu::attention_visible(p, 5, 0));
  EXPECT_FALSE(cpu::attention_visible(p, 5, 6));
  p.sliding_window = 3;  // a query sees itself and the 2 keys before it
  EXPECT_TRUE(cpu::attention_visible(p, 5, 3));
  EXPECT_FALSE(cpu::attention_visible(p, 5, 2));
  p.causal = false;
  EXPECT_TRUE(cpu::attention_visible(p, 5, 7));
}

// With one visible key the output is that key's value; a masked-out key has no influence.
TEST(CpuOps, AttentionCausalIgnoresFutureKeys) {
  cpu::AttentionParams p;
  p.n_head = p.n_head_kv = 1;
  p.head_dim_k = p.head_dim_v = 4;
  const std::vector<float> q = random_vector(4, 12);
  std::vector<float> k = random_vector(3 * 4, 13), v = random_vector(3 * 4, 14);
  const int32_t pos0 = 0;
  std::vector<float> out(4), out2(4);
  cpu::attention(q.data(), &pos0, 1, k.data(), v.data(), nullptr, 3, p, out.data());
  for (int d = 0; d < 4; ++d) EXPECT_NEAR(out[d], v[d], 1e-6);
  for (int i = 4; i < 12; ++i) v[i] += 100.0f;  // future values change
  cpu::attention(q.data(), &pos0, 1, k.data(), v.data(), nullptr, 3, p, out2.data());
  EXPECT_EQ(out, out2);
}

}  // namespace
}  // namespace fathom

// The grouped F16 / BF16 decode GEMV (launch_gemv_half_grouped, src/cuda/matmul_gemv_f16.cu):
// Q/K/V in one launch, gate/up with the gated activation, the fused RMS norm, bias and residual,
// against a double-precision reference on the same 16-bit weights.
//
// Tolerance: the weights are exact in fp32 and x is used in fp32, so the only error is fp32
// rounding of the products and sums (2^-24 relative each, fewer than 2^10 partial sums deep: ~2^-20
// of sum_k |w_k h_k|) and, with a fused norm, of x * norm_w and of the 1/rms factor (the fp32 sum
// of squares and rsqrtf, ~1e-6 relative of the whole output): 2^-18 * sum_k |w_k h_k| + 1e-6; the gated outputs take glu_expect's propagation of those bounds. A wrong
// segment, row pairing, norm or activation moves outputs by O(sum |w h| / sqrt(cols)), far more.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/matmul_gemv_f16.cuh"
#include "cuda/ops.cuh"
#include "fathom/quant.h"
#include "test_ops_util.h"
#include "test_q8_bound.h"

namespace fathom::test {
namespace {

using cuda::GemvHalfParams;
using cuda::GemvHalfSegment;

struct HalfMat {
  std::vector<uint16_t> bits;  // (rows, cols) F16 or BF16
  std::vector<double> w;       // the same values
  int64_t rows = 0;
};

HalfMat make_mat(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  HalfMat m;
  m.rows = rows;
  const std::vector<float> f = random_floats(size_t(rows * cols), seed, 0.5f);
  m.bits.resize(f.size());
  m.w.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    if (type == GgmlType::F16) {
      m.bits[i] = fp32_to_fp16(f[i]);
      m.w[i] = fp16_to_fp32(m.bits[i]);
    } else {
      uint32_t u;
      std::memcpy(&u, &f[i], 4);
      m.bits[i] = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  // round to nearest even
      const uint32_t back = uint32_t(m.bits[i]) << 16;
      float b;
      std::memcpy(&b, &back, 4);
      m.w[i] = b;
    }
  }
  return m;
}

// h = x (or rms-normed x * nw) per token; y[t][r] = sum_k w[r][k] h[t][k] and its bound.
void reference(const HalfMat& m, int64_t cols, const std::vector<double>& h, int64_t T, std::vector<double>& y,
               std::vector<double>& tol) {
  y.assign(size_t(T * m.rows), 0.0);
  tol.assign(y.size(), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < m.rows; ++r) {
      double s = 0.0, a = 0.0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = m.w[size_t(r * cols + k)] * h[size_t(t * cols + k)];
        s += p;
        a += std::fabs(p);
      }
      y[size_t(t * m.rows + r)] = s;
      tol[size_t(t * m.rows + r)] = std::ldexp(a, -18) + 1e-6;
    }
}

std::vector<double> normed(const std::vector<float>& x, const std::vector<float>& nw, int64_t T, int64_t cols,
                           float eps) {
  std::vector<double> h(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0.0;
    for (int64_t k = 0; k < cols; ++k) ss += double(x[size_t(t * cols + k)]) * x[size_t(t * cols + k)];
    const double inv = 1.0 / std::sqrt(ss / double(cols) + double(eps));
    for (int64_t k = 0; k < cols; ++k)
      h[size_t(t * cols + k)] = nw.empty() ? double(x[size_t(t * cols + k)])
                                           : double(x[size_t(t * cols + k)]) * inv * nw[size_t(k)];
  }
  return h;
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& tol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= tol[i]) && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size() << " outside the bound; first at " << first
                     << ": got " << got[first] << " want " << want[first] << " tol " << tol[first];
}

// Q/K/V (odd row counts, so a warp's row pair straddles segments) with biases, with and without
// the fused norm; a single segment with a residual aliasing y.
void qkv_case(GgmlType type, int64_t cols, int64_t T, bool norm) {
  const std::string name = std::string(ggml_type_name(type)) + " qkv cols=" + std::to_string(cols) +
                           " T=" + std::to_string(T) + (norm ? " norm" : "");
  SCOPED_TRACE(name);
  const int64_t rows[3] = {333, 65, 64};
  std::vector<HalfMat> m;
  for (int s = 0; s < 3; ++s) m.push_back(make_mat(type, rows[s], cols, uint32_t(11 + s + cols)));
  const std::vector<float> x = random_floats(size_t(T * cols), 7, 2.0f);
  const std::vector<float> nw = norm ? random_floats(size_t(cols), 9, 1.0f) : std::vector<float>();
  const float eps = 1e-5f;
  const std::vector<double> h = normed(x, nw, T, cols, eps);
  DeviceBuffer<float> dx(x), dnw(nw.empty() ? std::vector<float>(8, 0.0f) : nw);
  std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> dw;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dy, db;
  GemvHalfParams p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = T;
  p.n_seg = 3;
  if (norm) {
    p.norm_w = dnw.get();
    p.norm_eps = eps;
  }
  for (int s = 0; s < 3; ++s) {
    dw.push_back(std::make_unique<DeviceBuffer<uint16_t>>(m[size_t(s)].bits));
    dy.push_back(std::make_unique<DeviceBuffer<float>>(size_t(T * rows[s])));
    db.push_back(std::make_unique<DeviceBuffer<float>>(random_floats(size_t(rows[s]), uint32_t(40 + s))));
  }
  for (int s = 0; s < 3; ++s) {
    dy[size_t(s)]->poison();
    p.seg[s] = GemvHalfSegment{dw[size_t(s)]->get(), rows[s], dy[size_t(s)]->get(), db[size_t(s)]->get()};
  }
  ASSERT_TRUE(cuda::gemv_half_grouped_supports(p));
  cuda::launch_gemv_half_grouped(p, nullptr);
  for (int s = 0; s < 3; ++s) {
    std::vector<double> want, tol;
    reference(m[size_t(s)], cols, h, T, want, tol);
    const std::vector<float> b = db[size_t(s)]->download();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < rows[s]; ++r) want[size_t(t * rows[s] + r)] += b[size_t(r)];
    expect_close(name + " segment " + std::to_string(s), dy[size_t(s)]->download(), want, tol);
  }
  // One segment, residual aliasing y.
  const std::vector<float> res = random_floats(size_t(T * rows[0]), 21);
  DeviceBuffer<float> dr(res);
  GemvHalfParams one = p;
  one.n_seg = 1;
  one.seg[0] = GemvHalfSegment{dw[0]->get(), rows[0], dr.get(), nullptr};
  one.residual = dr.get();
  cuda::launch_gemv_half_grouped(one, nullptr);
  std::vector<double> want, tol;
  reference(m[0], cols, h, T, want, tol);
  for (size_t i = 0; i < want.size(); ++i) want[i] += res[i];
  expect_close(name + " residual", dr.download(), want, tol);
}

void glu_case(GgmlType type, cuda::GluKind kind, int64_t rows, int64_t cols, int64_t T, bool norm) {
  const std::string name = std::string(ggml_type_name(type)) + " glu rows=" + std::to_string(rows) +
                           " cols=" + std::to_string(cols) + " T=" + std::to_string(T) + (norm ? " norm" : "");
  SCOPED_TRACE(name);
  const HalfMat g = make_mat(type, rows, cols, 3), u = make_mat(type, rows, cols, 4);
  const std::vector<float> x = random_floats(size_t(T * cols), 5, 2.0f);
  const std::vector<float> nw = norm ? random_floats(size_t(cols), 6, 1.0f) : std::vector<float>();
  const std::vector<double> h = normed(x, nw, T, cols, 1e-6f);
  DeviceBuffer<float> dx(x), dnw(nw.empty() ? std::vector<float>(8, 0.0f) : nw), dout(size_t(T * rows)),
      dup(size_t(T * rows));
  DeviceBuffer<uint16_t> dg(g.bits), du(u.bits);
  dout.poison();
  GemvHalfParams p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = T;
  p.n_seg = 2;
  p.glu = true;
  p.glu_kind = kind;
  p.seg[0] = GemvHalfSegment{dg.get(), rows, dout.get(), nullptr};
  p.seg[1] = GemvHalfSegment{du.get(), rows, dup.get(), nullptr};
  if (norm) {
    p.norm_w = dnw.get();
    p.norm_eps = 1e-6f;
  }
  ASSERT_TRUE(cuda::gemv_half_grouped_supports(p));
  cuda::launch_gemv_half_grouped(p, nullptr);
  std::vector<double> wg, tg, wu, tu, want, tol;
  reference(g, cols, h, T, wg, tg);
  reference(u, cols, h, T, wu, tu);
  glu_expect(kind, wg, tg, wu, tu, wg.size(), want, tol);
  expect_close(name, dout.download(), want, tol);
}

TEST(GpuGemvHalf, GroupedQkvNormBiasResidual) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16})
    for (int64_t cols : {int64_t(1000), int64_t(4096)})
      for (int64_t T : {int64_t(1), int64_t(3), int64_t(8)})
        for (bool norm : {false, true}) qkv_case(type, cols, T, norm);
}

TEST(GpuGemvHalf, FusedGateUpActivation) {
  FATHOM_REQUIRE_GPU();
  glu_case(GgmlType::F16, cuda::GluKind::SWIGLU, 1001, 2048, 1, true);
  glu_case(GgmlType::F16, cuda::GluKind::SWIGLU, 8192, 2048, 1, false);
  glu_case(GgmlType::BF16, cuda::GluKind::GEGLU, 333, 1000, 3, true);
  glu_case(GgmlType::F16, cuda::GluKind::GEGLU, 64, 4096, 8, true);
}

TEST(GpuGemvHalf, RejectsBadGroups) {
  FATHOM_REQUIRE_GPU();
  DeviceBuffer<uint16_t> w(size_t(64 * 64));
  DeviceBuffer<float> x(64), y(64);
  GemvHalfParams p;
  p.type = GgmlType::F16;
  p.cols = 64;
  p.x = x.get();
  p.n_tokens = 1;
  p.n_seg = 1;
  p.seg[0] = GemvHalfSegment{w.get(), 64, y.get(), nullptr};
  EXPECT_TRUE(cuda::gemv_half_grouped_supports(p));
  GemvHalfParams q = p;
  q.type = GgmlType::Q8_0;
  EXPECT_FALSE(cuda::gemv_half_grouped_supports(q));
  q = p;
  q.n_tokens = cuda::kGemvHalfMaxTokens + 1;
  EXPECT_FALSE(cuda::gemv_half_grouped_supports(q));
  q = p;
  q.glu = true;  // glu needs two segments of equal rows
  EXPECT_FALSE(cuda::gemv_half_grouped_supports(q));
  q = p;
  q.cols = 60;
  EXPECT_FALSE(cuda::gemv_half_grouped_supports(q));
  q = p;
  q.n_seg = 2;
  q.seg[1] = GemvHalfSegment{w.get(), 64, y.get(), nullptr};
  q.residual = y.get();
  EXPECT_THROW(cuda::launch_gemv_half_grouped(q, nullptr), std::exception);
}

}  // namespace
}  // namespace fathom::test

// CPU quantization layer (include/fathom/quant.h): quantize -> dequantize error within each
// format's derived bound on Gaussian and heavy-tailed data, fp16/bf16 conversions (rounding,
// NaN/Inf/subnormals, exhaustive round trips), dot_row against a double-precision reference, and
// the error path. Bit-exactness against an independent implementation is checked separately by
// tests/python/check_quant_oracle.py (ctest quant_oracle_gguf_py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/ggml_type.h"
#include "fathom/quant.h"

using namespace fathom;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

enum class Dist { Gaussian, StudentT3, LaplaceOutliers };

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Gaussian: return "gaussian";
    case Dist::StudentT3: return "student_t3";
    case Dist::LaplaceOutliers: return "laplace_outliers";
  }
  return "?";
}

// n values; each group of 256 gets its own scale in [0.05, 50] so fp16 scales stay normal
// (subnormal fp16 scales lose relative precision, which the bounds below do not model).
std::vector<float> make_data(Dist dist, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> student(3.0f);
  std::exponential_distribution<float> expo(1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 256 == 0) scale = 0.05f * std::pow(1000.0f, unit(rng));
    float v = 0.0f;
    switch (dist) {
      case Dist::Gaussian: v = normal(rng); break;
      case Dist::StudentT3: v = student(rng); break;
      case Dist::LaplaceOutliers:
        v = (unit(rng) < 0.5f ? -1.0f : 1.0f) * expo(rng);
        if (unit(rng) < 0.01f) v *= 30.0f;  // 1% outliers, 30x
        break;
    }
    x[static_cast<size_t>(i)] = v * scale;
  }
  return x;
}

std::vector<float> round_trip(GgmlType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(ggml_row_bytes(t, n));
  quantize_row(t, x.data(), q.data(), n);
  std::vector<float> y(x.size());
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

// ---- error bounds -------------------------------------------------------------------------------
//
// Notation per block: amax = max |x|, Δ = the quant step. fp16 stores the scale d with relative
// error <= 2^-11 (normal range), so a quant q dequantizes with an extra |q| * d * 2^-11.
//
// Max-abs bounds (legacy types; rigorous):
//   Q8_0: d = amax/127, q = round(x/d) never clamps:            |e| <= d/2 + 127 d 2^-11
//   Q4_0: d = amax/8 maps the extreme to -8; the opposite side can reach +8 but clamps to +7:
//                                                               |e| <= d + 8 d 2^-11
//   Q5_0: same with 16 levels a side, d = amax/16:              |e| <= d + 16 d 2^-11
//   Q4_1: d = (max-min)/15, min stored in fp16 (abs err |min| 2^-11), q in [0,15] never clamps:
//                                                               |e| <= d/2 + 15 d 2^-11 + |min| 2^-11
//   Q5_1: the same with 31:                                     |e| <= d/2 + 31 d 2^-11 + |min| 2^-11
//   plus a few fp32 ulps of amax for the arithmetic (slack 1e-6 amax).
//
// RMSE bounds (every type): a uniform quantizer with step Δ has RMS error Δ/sqrt(12) on data that
// is smooth at the scale of Δ. With b-bit quants spanning the block's range (at most 2 amax wide,
// one side clamped for the symmetric types), Δ <= 2 amax / (2^b - 1) (asymmetric: Q4_1, Q5_1,
// Q2_K, Q4_K, Q5_K) or amax / 2^(b-1) (symmetric: Q4_0, Q5_0, Q8_0, Q3_K, Q6_K). The bound is
// slack(block) * Δ/sqrt(12) with
//   - 32-element blocks: slack 1.5. The RMSE of one block is itself a sample over 32 errors: with
//     uniform errors its relative standard deviation is sqrt(Var(u^2))/E(u^2)/sqrt(32)/2 ~ 8%, so
//     the worst of ~600 blocks sits near +3.5 sd ~ 1.28. A symmetric type can also clamp one
//     element of the side opposite its extreme (error up to Δ instead of Δ/2): one such element
//     in 32 raises the MSE by (1 - 1/12) / 32 * 12 ~ 34%, RMSE by ~16%. 1.28 * 1.16 ~ 1.48.
//     Measured worst: 1.37 (Q4_0, Gaussian), 1.25 (Q5_0), 1.21 (Q8_0), 1.19 (Q4_1/Q5_1).
//   - 256-element K-quant super-blocks: slack 1.0. The RMSE averages 256 errors (sd ~3%), and the
//     quants step per sub-block of 16/32, whose range is at most the super-block's, so the real
//     step is smaller than Δ; that margin covers the 4/6/8-bit quantization of the sub-block
//     scales and mins. Measured worst: 0.84 (Q5_K, Gaussian), 0.83 (Q3_K), 0.76 (Q6_K).
struct TypeBound {
  GgmlType type;
  int bits;
  bool symmetric;
};

double rmse_slack(int block_elems) { return block_elems == 32 ? 1.5 : 1.0; }

double step_over_amax(const TypeBound& tb) {
  return tb.symmetric ? 1.0 / std::ldexp(1.0, tb.bits - 1) : 2.0 / (std::ldexp(1.0, tb.bits) - 1.0);
}

// Rigorous max-abs error bound for a legacy block, or infinity for types without one.
double legacy_max_error(GgmlType t, const float* x, int n) {
  double amax = 0, mn = x[0], mx = x[0];
  for (int i = 0; i < n; ++i) {
    amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
    mn = std::min(mn, static_cast<double>(x[i]));
    mx = std::max(mx, static_cast<double>(x[i]));
  }
  const double u16 = std::ldexp(1.0, -11), slack = 1e-6 * amax;
  switch (t) {
    case GgmlType::Q8_0: return amax / 127 * (0.5 + 127 * u16) + slack;
    case GgmlType::Q4_0: return amax / 8 * (1 + 8 * u16) + slack;
    case GgmlType::Q5_0: return amax / 16 * (1 + 16 * u16) + slack;
    case GgmlType::Q4_1: return (mx - mn) / 15 * (0.5 + 15 * u16) + std::fabs(mn) * u16 + slack;
    case GgmlType::Q5_1: return (mx - mn) / 31 * (0.5 + 31 * u16) + std::fabs(mn) * u16 + slack;
    default: return std::numeric_limits<double>::infinity();
  }
}

struct RoundTripCase {
  TypeBound tb;
  Dist dist;
};

void PrintTo(const RoundTripCase& c, std::ostream* os) { *os << ggml_type_name(c.tb.type) << "/" << dist_name(c.dist); }

std::string case_name(const testing::TestParamInfo<RoundTripCase>& info) {
  return std::string(ggml_type_name(info.param.tb.type)) + "_" + dist_name(info.param.dist);
}

class QuantRoundTrip : public testing::TestWithParam<RoundTripCase> {};

TEST_P(QuantRoundTrip, ErrorWithinDerivedBound) {
  const TypeBound tb = GetParam().tb;
  const int block = static_cast<int>(ggml_type_traits(tb.type).block_elems);
  const int64_t n = 256 * 64 + 256 * 13;  // 77 super-blocks, odd on purpose
  const std::vector<float> x = make_data(GetParam().dist, n, 1000 + static_cast<uint32_t>(tb.type));
  const std::vector<float> y = round_trip(tb.type, x);

  double worst_rmse_ratio = 0, worst_abs_ratio = 0;
  int64_t worst_rmse_block = -1, worst_abs_elem = -1;
  for (int64_t b = 0; b < n / block; ++b) {
    const float* xb = x.data() + b * block;
    const float* yb = y.data() + b * block;
    double amax = 0, se = 0;
    for (int i = 0; i < block; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(xb[i])));
      const double e = static_cast<double>(yb[i]) - xb[i];
      se += e * e;
    }
    const double rmse = std::sqrt(se / block);
    const double rmse_bound = step_over_amax(tb) * amax / std::sqrt(12.0);
    if (rmse / rmse_bound > worst_rmse_ratio) {
      worst_rmse_ratio = rmse / rmse_bound;
      worst_rmse_block = b;
    }
    const double abs_bound = legacy_max_error(tb.type, xb, block);
    for (int i = 0; i < block; ++i) {
      const double r = std::fabs(static_cast<double>(yb[i]) - xb[i]) / abs_bound;
      if (r > worst_abs_ratio) {
        worst_abs_ratio = r;
        worst_abs_elem = b * block + i;
      }
    }
  }
  EXPECT_LE(worst_rmse_ratio, rmse_slack(block))
      << ggml_type_name(tb.type) << ": worst block " << worst_rmse_block << " has RMSE " << worst_rmse_ratio
      << "x of step/sqrt(12) (step = " << step_over_amax(tb) << " * block amax)";
  EXPECT_LE(worst_abs_ratio, 1.0) << ggml_type_name(tb.type) << ": element " << worst_abs_elem << " x="
                                  << x[static_cast<size_t>(worst_abs_elem)] << " -> "
                                  << y[static_cast<size_t>(worst_abs_elem)] << " exceeds the max-abs bound by "
                                  << worst_abs_ratio << "x";
  // Report the achieved ratio too: a large drop in quality shows here before it fails.
  RecordProperty("worst_rmse_over_step", std::to_string(worst_rmse_ratio));
}

const TypeBound kQuantTypes[] = {
    {GgmlType::Q8_0, 8, true},  {GgmlType::Q4_0, 4, true},  {GgmlType::Q4_1, 4, false}, {GgmlType::Q5_0, 5, true},
    {GgmlType::Q5_1, 5, false}, {GgmlType::Q2_K, 2, false}, {GgmlType::Q3_K, 3, true},  {GgmlType::Q4_K, 4, false},
    {GgmlType::Q5_K, 5, false}, {GgmlType::Q6_K, 6, true},
};

std::vector<RoundTripCase> all_round_trip_cases() {
  std::vector<RoundTripCase> out;
  for (const auto& tb : kQuantTypes)
    for (Dist d : {Dist::Gaussian, Dist::StudentT3, Dist::LaplaceOutliers}) out.push_back({tb, d});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantRoundTrip, testing::ValuesIn(all_round_trip_cases()), case_name);

// Edge blocks every quantizer must get exactly right: zeros, a constant, a single spike.
TEST(QuantEdgeBlocks, ZerosConstantAndSpike) {
  for (const auto& tb : kQuantTypes) {
    SCOPED_TRACE(ggml_type_name(tb.type));
    const int64_t n = 256;
    std::vector<float> zeros(n, 0.0f);
    for (float v : round_trip(tb.type, zeros)) ASSERT_EQ(v, 0.0f);

    // A constant block: every type stores it within its fp16/sub-scale precision.
    std::vector<float> constant(n, -1.5f);
    const auto yc = round_trip(tb.type, constant);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(yc[i], -1.5f, 1.5f * 0.02f) << "element " << i;

    // One spike in zeros: the spike is the block extreme, which every format represents
    // (to the precision of its scale) and the zeros stay (near) zero.
    std::vector<float> spike(n, 0.0f);
    spike[77] = 3.0f;
    const auto ys = round_trip(tb.type, spike);
    EXPECT_NEAR(ys[77], 3.0f, 3.0f * 0.02f);
    for (int64_t i = 0; i < n; ++i)
      if (i != 77) ASSERT_NEAR(ys[i], 0.0f, 3.0f * 0.02f) << "element " << i;
  }
}

// ---- fp16 / bf16 ----------------------------------------------------------------------------------

TEST(Fp16, EveryBitPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const uint16_t back = fp32_to_fp16(f);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_EQ(back & 0x7e00, 0x7e00) << "NaN must stay a (quiet) NaN: " << std::hex << h << " -> " << back;
      ASSERT_EQ(back & 0x8000, h & 0x8000);
    } else {
      ASSERT_EQ(back, h) << std::hex << h << " -> " << f;
    }
  }
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(bits_of(fp16_to_fp32(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_fp32(0xfc00), -std::numeric_limits<float>::infinity());

  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);  // below the midpoint to 2^16: 65504
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // the tie rounds to even: Inf
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 2^-24: even (0)
  EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // tie 1.5 ulp: even (2)
  EXPECT_EQ(fp32_to_fp16(1e-30f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-1e-30f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie: even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: even (up)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(2047.0f, -25)), 0x0400);  // subnormal rounding carries into normal
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(nan)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(float_of(0x7f800001)))))
      << "a NaN whose payload is below fp16 precision must not become Inf";
}

// For random finite floats, the fp16 result is the nearest representable value, ties to even.
TEST(Fp16, RoundsToNearestEven) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0, 0x477fffffu);  // |x| < 65536
  for (int it = 0; it < 200000; ++it) {
    const float x = float_of(bits(rng) | (it % 2 ? 0x80000000u : 0));
    const uint16_t h = fp32_to_fp16(x);
    const double ax = std::fabs(static_cast<double>(x));
    const uint16_t mag = h & 0x7fff;
    const double v = std::fabs(static_cast<double>(fp16_to_fp32(h)));
    const double below = mag > 0 ? std::fabs(static_cast<double>(fp16_to_fp32(mag - 1))) : -1.0;
    const double above = mag < 0x7c00 ? static_cast<double>(fp16_to_fp32(mag + 1)) : INFINITY;
    const double err = std::fabs(ax - v);
    ASSERT_LE(err, std::fabs(ax - above)) << x;
    if (below >= 0) ASSERT_LE(err, std::fabs(ax - below)) << x;
    if (err == std::fabs(ax - above) || (below >= 0 && err == std::fabs(ax - below)))
      ASSERT_EQ(mag & 1, 0) << "tie must go to even: " << x;
    ASSERT_EQ(h & 0x8000, (bits_of(x) >> 16) & 0x8000) << x;
  }
}

TEST(Bf16, EveryBitPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(bits_of(f), h << 16);  // bf16 -> fp32 is exact, NaN payloads included
    const uint16_t back = fp32_to_bf16(f);
    if ((h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0) {
      ASSERT_EQ(back, h | 0x40) << "NaN stays NaN, made quiet: " << std::hex << h;
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(float_of(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(float_of(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(fp32_to_bf16(float_of(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(fp32_to_bf16(float_of(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to Inf
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(fp32_to_bf16(float_of(0x00000001)), 0x0000);  // smallest fp32 subnormal
  EXPECT_EQ(fp32_to_bf16(float_of(0x00018000)), 0x0002);  // subnormal tie, odd -> even up
  EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_bf16(float_of(0x7f800001)), 0x7fc0);  // sNaN with a low payload: quiet NaN, not Inf
  EXPECT_EQ(fp32_to_bf16(float_of(0xffc12345)), 0xffc1);
}

// The F16/BF16 row functions are the scalar conversions, element by element.
TEST(PlainTypes, RowsMatchScalarConversions) {
  const std::vector<float> x = make_data(Dist::StudentT3, 1000, 3);
  std::vector<uint16_t> h(x.size());
  std::vector<float> y(x.size());
  quantize_row(GgmlType::F16, x.data(), h.data(), 1000);
  dequantize_row(GgmlType::F16, h.data(), y.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(h[i], fp32_to_fp16(x[i]));
    ASSERT_EQ(y[i], fp16_to_fp32(h[i]));
  }
  quantize_row(GgmlType::BF16, x.data(), h.data(), 1000);
  dequantize_row(GgmlType::BF16, h.data(), y.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(h[i], fp32_to_bf16(x[i]));
    ASSERT_EQ(y[i], bf16_to_fp32(h[i]));
  }
  std::vector<float> f(x.size());
  quantize_row(GgmlType::F32, x.data(), f.data(), 1000);
  EXPECT_EQ(f, x);
}

// ---- dot_row ---------------------------------------------------------------------------------------

// dot_row equals the dot product of the dequantized row with x, up to fp32 summation error:
// |fl(sum) - sum| <= n * 2^-24 * sum |w_i x_i| (recursive summation, gamma_n bound).
TEST(DotRow, MatchesDequantizeThenDot) {
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                            GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                            GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  for (GgmlType t : types) {
    for (int64_t n : {256, 256 * 3, 256 * 11}) {
      SCOPED_TRACE(std::string(ggml_type_name(t)) + " n=" + std::to_string(n));
      const std::vector<float> w = make_data(Dist::Gaussian, n, 11);
      const std::vector<float> x = make_data(Dist::LaplaceOutliers, n, 12);
      std::vector<uint8_t> q(ggml_row_bytes(t, n));
      quantize_row(t, w.data(), q.data(), n);
      std::vector<float> wd(static_cast<size_t>(n));
      dequantize_row(t, q.data(), wd.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(wd[i]) * x[i];
        mag += std::fabs(static_cast<double>(wd[i]) * x[i]);
      }
      const float got = dot_row(t, q.data(), x.data(), n);
      EXPECT_NEAR(got, ref, n * std::ldexp(1.0, -24) * mag) << "magnitude sum " << mag;
    }
  }
}

// A legacy row of an odd number of blocks (not a multiple of the 256-element chunk).
TEST(DotRow, OddLegacyLength) {
  const int64_t n = 32 * 7;
  const std::vector<float> w = make_data(Dist::Gaussian, n, 21), x = make_data(Dist::Gaussian, n, 22);
  std::vector<uint8_t> q(ggml_row_bytes(GgmlType::Q8_0, n));
  quantize_row(GgmlType::Q8_0, w.data(), q.data(), n);
  std::vector<float> wd(static_cast<size_t>(n));
  dequantize_row(GgmlType::Q8_0, q.data(), wd.data(), n);
  float seq = 0.0f;  // dequantize-then-multiply in element order, as documented
  for (int64_t i = 0; i < n; ++i) seq += wd[i] * x[i];
  EXPECT_EQ(dot_row(GgmlType::Q8_0, q.data(), x.data(), n), seq);
}

// ---- error path ------------------------------------------------------------------------------------

TEST(QuantErrors, BadLengthAndUnsupportedTypesThrow) {
  std::vector<float> x(300, 1.0f), y(300);
  std::vector<uint8_t> buf(1024);
  EXPECT_THROW(quantize_row(GgmlType::Q4_K, x.data(), buf.data(), 300), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q8_0, buf.data(), y.data(), 33), Error);
  EXPECT_THROW(dot_row(GgmlType::Q6_K, buf.data(), x.data(), 100), Error);
  EXPECT_FALSE(can_dequantize(GgmlType::IQ2_XXS));
  EXPECT_FALSE(can_quantize(GgmlType::IQ2_XXS));
  EXPECT_THROW(dequantize_row(GgmlType::IQ2_XXS, buf.data(), y.data(), 256), Error);
  EXPECT_THROW(quantize_row(GgmlType::Q8_1, x.data(), buf.data(), 32), Error);
  std::vector<float> imatrix(256, 1.0f);
  EXPECT_THROW(quantize_row(GgmlType::Q4_K, x.data(), buf.data(), 256, imatrix.data()), Error);
  try {
    dequantize_row(GgmlType::IQ2_XXS, buf.data(), y.data(), 256);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
  }
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                     GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                     GgmlType::Q6_K}) {
    EXPECT_TRUE(can_dequantize(t)) << ggml_type_name(t);
    EXPECT_TRUE(can_quantize(t)) << ggml_type_name(t);
  }
}

}  // namespace

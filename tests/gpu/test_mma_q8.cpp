// The tensor-core small-batch matmul (src/cuda/matmul_mma_q8.cu): every supported type at 1..64
// tokens, odd row counts, split-K with and without a workspace, bias / residual (aliasing y),
// grouped Q/K/V, fused gate/up activation, many tiles per CTA, long rows, bit-identical reruns;
// and the shapes a code review listed: the LM head (128256 x 4096) with the engine's workspace,
// Q6_K's cols % 2048 rule, CUDA-graph replays against eager launches, fused GLU with split-K at
// 17..64 tokens, > 20 tiles with workspaces too small for the wanted splits (GPU run:
// bench/device_sanitize_new.sh, with compute-sanitizer).
// Reference: double precision from the CPU dequantizer (src/quant). Tolerance: the bound of
// matmul_mma_q8.cuh, sum_i |e_i| max|x_block(i)| / 64516 with e_i = w_i - o_i (o_i = the weight
// of code 0, taken from the CPU dequantizer on a copy of the row with every code zeroed) for the
// types that apply o_i with the exact x sum (Q4_1 Q5_1 Q4_K Q5_K) and e_i = w_i for the others,
// plus 2^-16 of sum (|c_i x_i| + |o_i x_i|) for the fp32 scaling and accumulation (a few hundred
// sub-block terms, each rounded at 2^-24 relative, far under 2^-16). Where the launch takes the
// bf16 variant (Q4_K at many tokens, Q6_K where switched on; mma_q8_bf16), its bound instead: 3.02 * 2^-8 sum |c_i x_i| +
// 2.01 * 2^-8 sum_j |o_j X_j| (X_j the sum of x over 32-block j; 2^-8 per bf16 rounding) + (K / 16 + 64) * 2^-21 sum |w_i x_i|
// for the fp32 tensor-core accumulation (one rounding per mma step, each at most 2^-22 of the sum
// of the magnitudes so far; doubled for margin).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/matmul_gemv_q8.cuh"
#include "cuda/matmul_mma_q8.cuh"
#include "fathom/quant.h"
#include "test_ops_util.h"
#include "test_q8_bound.h"

namespace fathom::test {
namespace {

using fathom::cuda::GluKind;
using fathom::cuda::MmaQ8Params;
using fathom::cuda::MmaQ8Segment;

const GgmlType kTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                           GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

bool offset_with_sum(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q4_K || t == GgmlType::Q5_K;
}

// Zeroes every code byte of a row (keeps the scales and mins), so dequantizing it gives o_i.
void zero_codes(GgmlType t, uint8_t* row, int64_t cols) {
  const GgmlTypeTraits& tr = ggml_type_traits(t);
  for (int64_t b = 0; b < cols / tr.block_elems; ++b) {
    uint8_t* blk = row + b * int64_t(tr.block_bytes);
    switch (t) {
      case GgmlType::Q4_1: std::memset(blk + 4, 0, 16); break;
      case GgmlType::Q5_1: std::memset(blk + 4, 0, 20); break;
      case GgmlType::Q4_K: std::memset(blk + 16, 0, 128); break;
      case GgmlType::Q5_K: std::memset(blk + 16, 0, 160); break;
      default: break;
    }
  }
}

struct HostMat {
  GgmlType type = GgmlType::Q4_K;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> q;  // quantized bytes
  std::vector<float> wd;   // dequantized
  std::vector<float> o;    // value of code 0 per element (0 for the folded-offset types)
};

// A matrix from its GGUF bytes (q: rows x ggml_row_bytes(type, cols)), or, with q empty, from
// random weights quantized.
HostMat host_mat(GgmlType type, int64_t rows, int64_t cols, uint32_t seed, std::vector<uint8_t> q = {}) {
  HostMat m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  const size_t rb = ggml_row_bytes(type, cols);
  const bool random = q.empty();
  const std::vector<float> wf = random ? random_floats(size_t(rows * cols), seed, 0.5f) : std::vector<float>();
  m.q = std::move(q);
  m.q.resize(rb * size_t(rows));
  m.wd.resize(size_t(rows * cols));
  m.o.assign(size_t(rows * cols), 0.0f);
  std::vector<uint8_t> zrow(rb);
  for (int64_t r = 0; r < rows; ++r) {
    if (random) quantize_row(type, wf.data() + r * cols, m.q.data() + r * rb, cols);
    dequantize_row(type, m.q.data() + r * rb, m.wd.data() + r * cols, cols);
    if (offset_with_sum(type)) {
      std::memcpy(zrow.data(), m.q.data() + r * rb, rb);
      zero_codes(type, zrow.data(), cols);
      dequantize_row(type, zrow.data(), m.o.data() + r * cols, cols);
    }
  }
  return m;
}

HostMat make_mat(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) { return host_mat(type, rows, cols, seed); }

// Exact dot products (n, rows) and their tolerance.
void reference(const HostMat& m, const std::vector<float>& x, int64_t n, std::vector<double>& want,
               std::vector<double>& tol) {
  std::vector<double> xmax(x.size());
  for (size_t b0 = 0; b0 < x.size(); b0 += 32) {
    double mx = 0.0;
    for (size_t i = b0; i < b0 + 32; ++i) mx = std::max(mx, double(std::fabs(x[i])));
    for (size_t i = b0; i < b0 + 32; ++i) xmax[i] = mx;
  }
  want.assign(size_t(n * m.rows), 0.0);
  tol.assign(want.size(), 0.0);
  const bool bf = fathom::cuda::mma_q8_bf16(m.type, n);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < m.rows; ++r) {
      double s = 0.0, a = 0.0, q = 0.0, c = 0.0, mo = 0.0, xsum = 0.0;
      const float* w = m.wd.data() + r * m.cols;
      const float* o = m.o.data() + r * m.cols;
      const float* xt = x.data() + t * m.cols;
      const double* xm = xmax.data() + t * m.cols;
      for (int64_t k = 0; k < m.cols; ++k) {
        const double wk = w[k], ok = o[k], e = wk - ok;
        s += wk * xt[k];
        a += (std::fabs(e) + std::fabs(ok)) * std::fabs(xt[k]);
        q += std::fabs(e) * xm[k];
        c += std::fabs(e * xt[k]);
        xsum += xt[k];
        if (k % 32 == 31) {
          mo += std::fabs(ok) * std::fabs(xsum);  // o is constant over a Q4_K 32-block
          xsum = 0.0;
        }
      }
      want[size_t(t * m.rows + r)] = s;
      tol[size_t(t * m.rows + r)] =
          bf ? 3.02 * std::ldexp(c, -8) + 2.01 * std::ldexp(mo, -8) + double(m.cols / 16 + 64) * std::ldexp(a, -21) +
                   1e-6
             : std::ldexp(a, -16) + q / 64516.0 * 1.001 + 1e-6;
    }
}

std::string label(const char* what, GgmlType type, int64_t rows, int64_t cols, int64_t n) {
  return std::string(what) + "(type=" + ggml_type_name(type) + ",rows=" + std::to_string(rows) +
         ",cols=" + std::to_string(cols) + ",n=" + std::to_string(n) + ")";
}

// A launch of one matrix (rows x cols, GGUF blocks at w) over n tokens of x into y (+ bias);
// callers add the workspace, residual or flags.
MmaQ8Params one_matrix(GgmlType type, int64_t cols, const float* x, int64_t n, const void* w, int64_t rows, float* y,
                       const float* bias = nullptr) {
  MmaQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = x;
  p.n_tokens = n;
  p.seg[0] = MmaQ8Segment{w, rows, y, bias};
  return p;
}

// A zeroed workspace of the size the engine would give.
struct Workspace {
  DeviceBuffer<uint8_t> buf;
  explicit Workspace(int64_t max_tokens, int64_t max_rows) {
    buf.resize(fathom::cuda::mma_q8_workspace_bytes(max_tokens, max_rows));
    CUDA_CHECK(cudaMemset(buf.get(), 0, buf.size()));
  }
};

void check_plain(GgmlType type, int64_t rows, int64_t cols, int64_t n, bool bias, bool residual, bool use_ws = true) {
  const std::string name = label("mma_q8", type, rows, cols, n) + (use_ws ? "" : ",no-workspace");
  SCOPED_TRACE(name);
  const uint32_t seed = uint32_t(rows * 17 + cols * 5 + n + int(type) * 1000);
  const HostMat m = make_mat(type, rows, cols, seed);
  const std::vector<float> x = random_floats(size_t(n * cols), seed + 1);
  const std::vector<float> b = random_floats(size_t(rows), seed + 2);
  const std::vector<float> res = random_floats(size_t(n * rows), seed + 3);
  std::vector<double> want, tol;
  reference(m, x, n, want, tol);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      if (bias) want[size_t(t * rows + r)] += b[size_t(r)];
      if (residual) want[size_t(t * rows + r)] += res[size_t(t * rows + r)];
    }
  DeviceBuffer<uint8_t> dw(m.q);
  DeviceBuffer<float> dx(x), db(b), dy(size_t(n * rows));
  if (residual) dy.upload(res);
  else dy.poison();
  Workspace ws(n, rows);
  MmaQ8Params p = one_matrix(type, cols, dx.get(), n, dw.get(), rows, dy.get(), bias ? db.get() : nullptr);
  p.residual = residual ? dy.get() : nullptr;
  if (use_ws) {
    p.workspace = ws.buf.get();
    p.workspace_bytes = ws.buf.size();
  }
  ASSERT_TRUE(fathom::cuda::mma_q8_supports(type, n, cols));
  fathom::cuda::launch_mma_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE(name, dy.download(), want, tol);
}

TEST(GpuMmaQ8, EveryTypeAndTokenCount) {
  // 333 rows: two 256-row tiles, the second partial; cols 2048 (Q6_K rows of 16-byte multiples).
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : kTypes)
    for (int64_t n : {1, 2, 3, 8, 13, 32, 64}) check_plain(type, 333, 2048, n, false, false);
}

// Restores the bf16 variant's default token threshold when a test ends (also on failure).
struct Bf16Min {
  explicit Bf16Min(int n) { fathom::cuda::mma_q8_set_bf16_min_tokens(n); }
  ~Bf16Min() { fathom::cuda::mma_q8_set_bf16_min_tokens(0); }
};

// Switches Q6_K in the bf16 variant on or off for a test (off by default until GPU-measured) and
// back to the environment's choice when the test ends.
struct Bf16Q6k {
  explicit Bf16Q6k(int v) { fathom::cuda::mma_q8_set_bf16_q6k(v); }
  ~Bf16Q6k() { fathom::cuda::mma_q8_set_bf16_q6k(-1); }
};

// The bf16 variant (Q4_K) at every token count it can take, odd rows (a partial tile: warps with
// no rows), long rows with split-K, bias + residual, no workspace, ring wrap-around; and the int8 kernel at the counts the variant takes
// by default, so both stay covered whatever the threshold.
TEST(GpuMmaQ8, Bf16VariantQ4K) {
  FATHOM_REQUIRE_GPU();
  {
    Bf16Min force(2);
    Bf16Q6k q6k_off(0);
    for (int64_t n : {2, 3, 5, 8, 9, 13, 16, 17, 31, 32, 33, 40, 64}) {
      EXPECT_TRUE(fathom::cuda::mma_q8_bf16(GgmlType::Q4_K, n));
      EXPECT_FALSE(fathom::cuda::mma_q8_bf16(GgmlType::Q6_K, n));
      check_plain(GgmlType::Q4_K, 333, 2048, n, false, false);
    }
    check_plain(GgmlType::Q4_K, 300, 14336, 33, true, true);
    check_plain(GgmlType::Q4_K, 129, 1024, 17, true, true);
    check_plain(GgmlType::Q4_K, 257, 2048, 40, false, false, false);
    check_plain(GgmlType::Q4_K, 5000, 512, 24, true, false);
    // 157 tiles over <= 132 CTAs: CTAs with two or more tiles run more (tile, stage) items than the
    // per-warp rings have slots (ring wrap-around across a tile change).
    check_plain(GgmlType::Q4_K, 40000, 1024, 24, false, false);
  }
  {
    // MmaQ8Params::allow_bf16 = false (the engine's small matrices) keeps the int8 kernel.
    DeviceBuffer<uint8_t> w(size_t(333) * ggml_row_bytes(GgmlType::Q4_K, 2048));
    DeviceBuffer<float> x(size_t(32 * 2048)), y(size_t(32 * 333));
    MmaQ8Params p = one_matrix(GgmlType::Q4_K, 2048, x.get(), 32, w.get(), 333, y.get());
    EXPECT_TRUE(fathom::cuda::mma_q8_plan(p).bf16);
    p.allow_bf16 = false;
    EXPECT_FALSE(fathom::cuda::mma_q8_plan(p).bf16);
  }
  {
    Bf16Min never(65);
    for (int64_t n : {17, 32, 64}) {
      EXPECT_FALSE(fathom::cuda::mma_q8_bf16(GgmlType::Q4_K, n));
      check_plain(GgmlType::Q4_K, 333, 2048, n, n == 17, false);
    }
  }
}

TEST(GpuMmaQ8, BiasResidualAndNoWorkspace) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_0})
    for (int64_t n : {1, 5, 17, 40}) {
      check_plain(type, 129, 1024 * (type == GgmlType::Q6_K ? 2 : 1), n, true, true);
      check_plain(type, 257, 2048, n, n % 2 == 1, false, false);
    }
}

TEST(GpuMmaQ8, ManyTilesAndLongRows) {
  // 5000 x 512: 20 tiles, several per CTA (the ring runs across tile changes); 300 x 14336:
  // Llama-3-8B ffn_down rows (56 stages, split-K).
  FATHOM_REQUIRE_GPU();
  check_plain(GgmlType::Q4_K, 5000, 512, 3, true, false);
  check_plain(GgmlType::Q8_0, 5000, 512, 24, false, true);
  check_plain(GgmlType::Q6_K, 300, 14336, 8, false, false);
  check_plain(GgmlType::Q4_K, 300, 14336, 33, false, true);
  check_plain(GgmlType::Q5_K, 300, 14336, 2, true, false);
}

TEST(GpuMmaQ8, GroupedQkv) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_0})
    for (int64_t n : {2, 17}) {
      const int64_t cols = 2048;
      const int64_t rows[3] = {512, 63, 300};
      SCOPED_TRACE(label("qkv", type, rows[0], cols, n));
      const std::vector<float> x = random_floats(size_t(n * cols), 99 + uint32_t(n));
      DeviceBuffer<float> dx(x);
      std::vector<HostMat> mats;
      std::vector<std::vector<float>> biases;
      for (int s = 0; s < 3; ++s) {
        mats.push_back(make_mat(type, rows[s], cols, 500u + uint32_t(s) * 7u + uint32_t(type)));
        biases.push_back(random_floats(size_t(rows[s]), 900u + uint32_t(s)));
      }
      DeviceBuffer<uint8_t> dw0(mats[0].q), dw1(mats[1].q), dw2(mats[2].q);
      DeviceBuffer<float> db0(biases[0]), db2(biases[2]);
      DeviceBuffer<float> dy0(size_t(n * rows[0])), dy1(size_t(n * rows[1])), dy2(size_t(n * rows[2]));
      dy0.poison();
      dy1.poison();
      dy2.poison();
      Workspace ws(n, rows[0] + rows[1] + rows[2]);
      MmaQ8Params p;
      p.type = type;
      p.cols = cols;
      p.x = dx.get();
      p.n_tokens = n;
      p.n_seg = 3;
      p.seg[0] = MmaQ8Segment{dw0.get(), rows[0], dy0.get(), db0.get()};
      p.seg[1] = MmaQ8Segment{dw1.get(), rows[1], dy1.get(), nullptr};
      p.seg[2] = MmaQ8Segment{dw2.get(), rows[2], dy2.get(), db2.get()};
      p.workspace = ws.buf.get();
      p.workspace_bytes = ws.buf.size();
      fathom::cuda::launch_mma_q8(p, nullptr);
      DeviceBuffer<float>* outs[3] = {&dy0, &dy1, &dy2};
      for (int s = 0; s < 3; ++s) {
        std::vector<double> want, tol;
        reference(mats[size_t(s)], x, n, want, tol);
        if (s != 1)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < rows[s]; ++r) want[size_t(t * rows[s] + r)] += biases[size_t(s)][size_t(r)];
        FATHOM_EXPECT_CLOSE("segment " + std::to_string(s), outs[s]->download(), want, tol);
      }
    }
}

// One fused gate/up launch of n tokens (x holds at least n tokens; wg.. the references of at least
// n tokens) with an engine-sized workspace; returns the plan it ran with.
fathom::cuda::MmaQ8Plan check_glu(GluKind kind, const HostMat& g, const HostMat& u, const std::vector<float>& x,
                                  int64_t n, const std::vector<double>& wg, const std::vector<double>& tg,
                                  const std::vector<double>& wu, const std::vector<double>& tu) {
  const int64_t rows = g.rows, cols = g.cols;
  const std::string name = label(kind == GluKind::SWIGLU ? "swiglu" : "geglu", g.type, rows, cols, n);
  SCOPED_TRACE(name);
  std::vector<double> want, tol;
  glu_expect(kind, wg, tg, wu, tu, size_t(n * rows), want, tol);
  DeviceBuffer<uint8_t> dg(g.q), du(u.q);
  DeviceBuffer<float> dx(x), dout(size_t(n * rows)), dup(size_t(n * rows));
  dout.poison();
  dup.poison();
  Workspace ws(n, 2 * rows);
  MmaQ8Params p;
  p.type = g.type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.n_seg = 2;
  p.seg[0] = MmaQ8Segment{dg.get(), rows, dout.get(), nullptr};
  p.seg[1] = MmaQ8Segment{du.get(), rows, dup.get(), nullptr};
  p.glu = true;
  p.glu_kind = kind;
  p.workspace = ws.buf.get();
  p.workspace_bytes = ws.buf.size();
  const fathom::cuda::MmaQ8Plan plan = fathom::cuda::mma_q8_plan(p);
  fathom::cuda::launch_mma_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE(name, dout.download(), want, tol);
  return plan;
}

TEST(GpuMmaQ8, FusedGateUpActivation) {
  FATHOM_REQUIRE_GPU();
  for (GluKind kind : {GluKind::SWIGLU, GluKind::GEGLU})
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0})
      for (int64_t n : {1, 8, 33}) {
        const int64_t rows = 333, cols = 2048;
        const HostMat g = make_mat(type, rows, cols, 11u + uint32_t(type));
        const HostMat u = make_mat(type, rows, cols, 12u + uint32_t(type));
        const std::vector<float> x = random_floats(size_t(n * cols), 13u + uint32_t(n));
        std::vector<double> wg, tg, wu, tu;
        reference(g, x, n, wg, tg);
        reference(u, x, n, wu, tu);
        check_glu(kind, g, u, x, n, wg, tg, wu, tu);
      }
}

// A Q4_K input where the bf16 roundings add up instead of cancelling: d = 1 + 2^-8 (fp16 0x3C04) and
// x = 1 + 2^-8 both round to 1 in bf16 (ties to even); every sub-block scale 1, every code 1, no
// min. The variant returns 2048 per output where the exact value is 2064.03: 1.99 * 2^-8 of
// sum |c x|, over the 1.52 * 2^-8 first written for its bound (a review found the rounding unit
// wrong), within the 3.02 * 2^-8 derived for it (matmul_mma_q8.cuh).
TEST(GpuMmaQ8, Bf16BoundWorstCase) {
  FATHOM_REQUIRE_GPU();
  Bf16Min force(2);
  const int64_t rows = 16, cols = 2048, n = 8;
  const size_t rb = ggml_row_bytes(GgmlType::Q4_K, cols);
  std::vector<uint8_t> q(rb * size_t(rows));
  for (size_t b = 0; b < q.size(); b += 144) {
    uint8_t* blk = q.data() + b;
    blk[0] = 0x04;  // d = fp16 0x3C04
    blk[1] = 0x3C;
    blk[2] = blk[3] = 0;  // dmin = 0
    for (int j = 0; j < 4; ++j) {
      blk[4 + j] = 1;   // sc 0..3 = 1
      blk[8 + j] = 0;   // m 0..3 = 0, high bits of sc / m 4..7 = 0
      blk[12 + j] = 1;  // sc 4..7 = 1, m 4..7 = 0
    }
    std::memset(blk + 16, 0x11, 128);  // every code 1
  }
  const HostMat m = host_mat(GgmlType::Q4_K, rows, cols, 0, q);
  ASSERT_FLOAT_EQ(m.wd[0], 1.00390625f);
  const std::vector<float> x(size_t(n * cols), 1.00390625f);
  std::vector<double> want, tol;
  reference(m, x, n, want, tol);
  DeviceBuffer<uint8_t> dw(m.q);
  DeviceBuffer<float> dx(x), dy(size_t(n * rows));
  dy.poison();
  MmaQ8Params p = one_matrix(GgmlType::Q4_K, cols, dx.get(), n, dw.get(), rows, dy.get());
  ASSERT_TRUE(fathom::cuda::mma_q8_plan(p).bf16);
  fathom::cuda::launch_mma_q8(p, nullptr);
  const std::vector<float> got = dy.download();
  FATHOM_EXPECT_CLOSE("bf16 worst case", got, want, tol);
  std::printf("[bf16-bound] got %.4f, exact %.4f: error %.3f * 2^-8 of sum |c x|, tolerance %.3f\n", got[0], want[0],
              std::fabs(got[0] - want[0]) / std::ldexp(want[0], -8), tol[0]);
}

// Q6_K in the bf16 variant (mma_q8_bf_kernel<Q6_K>, written in session 17 without a GPU): every
// token count, a partial tile, split-K over 14336 columns with bias + residual, no workspace, ring
// wrap-around over 79 tiles, a fused gate/up; and off, the int8 kernel at the same counts.
TEST(GpuMmaQ8, Bf16VariantQ6K) {
  FATHOM_REQUIRE_GPU();
  {
    Bf16Q6k on(1);
    Bf16Min force(2);
    if (!fathom::cuda::mma_q8_bf16(GgmlType::Q6_K, 8)) GTEST_SKIP() << "no sm_90 tensor-map rings on this device";
    for (int64_t n : {2, 5, 8, 13, 16, 17, 32, 33, 64}) check_plain(GgmlType::Q6_K, 333, 2048, n, false, false);
    check_plain(GgmlType::Q6_K, 300, 14336, 33, true, true);
    check_plain(GgmlType::Q6_K, 257, 2048, 40, false, false, false);
    check_plain(GgmlType::Q6_K, 20000, 2048, 24, false, false);
    const int64_t rows = 333, cols = 4096, n = 8;
    const HostMat g = make_mat(GgmlType::Q6_K, rows, cols, 31u);
    const HostMat u = make_mat(GgmlType::Q6_K, rows, cols, 32u);
    const std::vector<float> x = random_floats(size_t(n * cols), 33u);
    std::vector<double> wg, tg, wu, tu;
    reference(g, x, n, wg, tg);
    reference(u, x, n, wu, tu);
    EXPECT_TRUE(check_glu(GluKind::SWIGLU, g, u, x, n, wg, tg, wu, tu).bf16);
  }
  {
    Bf16Q6k off(0);
    EXPECT_FALSE(fathom::cuda::mma_q8_bf16(GgmlType::Q6_K, 32));
    check_plain(GgmlType::Q6_K, 333, 2048, 32, false, false);
  }
}

// The bf16 variant's fused gate/up at 2..13 tokens (forced from 2; the default is 8).
TEST(GpuMmaQ8, Bf16VariantFusedGateUp) {
  FATHOM_REQUIRE_GPU();
  Bf16Min force(2);
  for (GluKind kind : {GluKind::SWIGLU, GluKind::GEGLU})
    for (int64_t n : {2, 8, 13}) {
      const int64_t rows = 333, cols = 4096;
      const HostMat g = make_mat(GgmlType::Q4_K, rows, cols, 21u);
      const HostMat u = make_mat(GgmlType::Q4_K, rows, cols, 22u);
      const std::vector<float> x = random_floats(size_t(n * cols), 23u + uint32_t(n));
      std::vector<double> wg, tg, wu, tu;
      reference(g, x, n, wg, tg);
      reference(u, x, n, wu, tu);
      EXPECT_TRUE(check_glu(kind, g, u, x, n, wg, tg, wu, tu).bf16);
    }
}

TEST(GpuMmaQ8, BitIdenticalRerunsWithSplitK) {
  FATHOM_REQUIRE_GPU();
  const int64_t rows = 1024, cols = 4096, n = 12;
  const HostMat m = make_mat(GgmlType::Q4_K, rows, cols, 7);
  const std::vector<float> x = random_floats(size_t(n * cols), 8);
  DeviceBuffer<uint8_t> dw(m.q);
  DeviceBuffer<float> dx(x), dy(size_t(n * rows));
  Workspace ws(n, rows);
  MmaQ8Params p = one_matrix(GgmlType::Q4_K, cols, dx.get(), n, dw.get(), rows, dy.get());
  p.workspace = ws.buf.get();
  p.workspace_bytes = ws.buf.size();
  const fathom::cuda::MmaQ8Plan plan = fathom::cuda::mma_q8_plan(p);
  EXPECT_GT(plan.splits, 1) << "4 tiles on a large GPU should split K";
  fathom::cuda::launch_mma_q8(p, nullptr);
  const std::vector<float> a = dy.download();
  for (int i = 0; i < 3; ++i) fathom::cuda::launch_mma_q8(p, nullptr);
  const std::vector<float> b = dy.download();
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(GpuMmaQ8, SupportsAndRejects) {
  FATHOM_REQUIRE_GPU();
  EXPECT_TRUE(fathom::cuda::mma_q8_supports(GgmlType::Q4_K, 64, 4096));
  EXPECT_FALSE(fathom::cuda::mma_q8_supports(GgmlType::Q4_K, 65, 4096));
  EXPECT_FALSE(fathom::cuda::mma_q8_supports(GgmlType::Q6_K, 8, 768));   // 630-byte rows
  EXPECT_FALSE(fathom::cuda::mma_q8_supports(GgmlType::Q8_0, 8, 640));   // not a multiple of 256
  EXPECT_FALSE(fathom::cuda::mma_q8_supports(GgmlType::F16, 8, 4096));
  MmaQ8Params p;
  p.type = GgmlType::Q4_K;
  p.cols = 300;
  p.n_tokens = 1;
  EXPECT_THROW(fathom::cuda::launch_mma_q8(p, nullptr), fathom::Error);
  p.cols = 256;
  p.n_tokens = 65;
  EXPECT_THROW(fathom::cuda::launch_mma_q8(p, nullptr), fathom::Error);
}

// ---- shapes from the code review: LM head, Q6_K column rule, CUDA graphs, GLU split-K, many
// tiles with small workspaces ------------------------------------------------------------------

// The engine's workspace rows for Llama-3-8B: max(2 n_ff, q + 2 kv, n_embd) = 2 x 14336 (engine.cpp).
constexpr int64_t kEngineWsRows = 2 * 14336;

// A workspace of exactly `bytes` bytes, zeroed (cudaMalloc: 256-byte aligned).
struct RawWorkspace {
  DeviceBuffer<uint8_t> buf;
  explicit RawWorkspace(size_t bytes) {
    buf.resize(bytes);
    CUDA_CHECK(cudaMemset(buf.get(), 0, buf.size()));
  }
};
// Bytes of a workspace with room for `splits` partials of `tiles` tiles at `nt` n-tiles.
size_t ws_bytes_for(int64_t tiles, int splits, int nt) {
  return fathom::cuda::kMmaQ8WorkspaceCounterBytes + size_t(tiles) * size_t(splits) * 1024 * size_t(nt) * sizeof(float);
}

// The arrival counters must be zero again after every launch (the workspace contract).
void expect_counters_zero(const void* ws, const std::string& when) {
  std::vector<int> c(fathom::cuda::kMmaQ8WorkspaceCounterBytes / sizeof(int));
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(c.data(), ws, fathom::cuda::kMmaQ8WorkspaceCounterBytes, cudaMemcpyDeviceToHost));
  const auto nonzero = std::count_if(c.begin(), c.end(), [](int v) { return v != 0; });
  EXPECT_EQ(nonzero, 0) << when << ": split-K arrival counters left non-zero";
}

// Device copy of a rows x cols matrix whose row r is m's row r % m.rows: m.rows distinct rows are
// uploaded once and doubled by device-to-device copies, so the LM head and the many-tile shapes
// need no host quantization or reference of all their rows. With m.rows not a multiple of 256 the
// tiles hold different rows, so a partial added to the wrong tile still shows.
void upload_replicated(const HostMat& m, int64_t rows, DeviceBuffer<uint8_t>& dw) {
  const size_t rb = ggml_row_bytes(m.type, m.cols);
  const size_t total = rb * size_t(rows);
  dw.resize(total);
  size_t have = rb * size_t(std::min(rows, m.rows));
  CUDA_CHECK(cudaMemcpy(dw.get(), m.q.data(), have, cudaMemcpyHostToDevice));
  while (have < total) {  // [0, have) is a whole number of m.rows periods
    const size_t c = std::min(have, total - have);
    CUDA_CHECK(cudaMemcpy(dw.get() + have, dw.get(), c, cudaMemcpyDeviceToDevice));
    have += c;
  }
}

// (n, rows) from a reference (at least n tokens) of the base_rows distinct rows.
std::vector<double> expand_replicated(const std::vector<double>& base, int64_t base_rows, int64_t rows, int64_t n) {
  std::vector<double> out(size_t(n * rows));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) out[size_t(t * rows + r)] = base[size_t(t * base_rows + r % base_rows)];
  return out;
}

std::string plan_text(const fathom::cuda::MmaQ8Plan& pl) {
  return "S=" + std::to_string(pl.splits) + " grid=" + std::to_string(pl.grid) + " nt=" + std::to_string(pl.nt) +
         " kstages=" + std::to_string(pl.kstages);
}

// y = x W (+ bias) over a replicated matrix (upload_replicated) with the given workspace (nullable);
// compares every output and checks the counters; returns the plan.
fathom::cuda::MmaQ8Plan check_replicated(const std::string& name, const HostMat& m, const DeviceBuffer<uint8_t>& dw,
                                         int64_t rows, const DeviceBuffer<float>& dx, int64_t n,
                                         const std::vector<double>& want_base, const std::vector<double>& tol_base,
                                         const DeviceBuffer<float>* dbias, const std::vector<float>& bias, void* ws,
                                         size_t ws_bytes) {
  SCOPED_TRACE(name);
  std::vector<double> want = expand_replicated(want_base, m.rows, rows, n);
  const std::vector<double> tol = expand_replicated(tol_base, m.rows, rows, n);
  if (dbias)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) want[size_t(t * rows + r)] += bias[size_t(r)];
  DeviceBuffer<float> dy(size_t(n * rows));
  dy.poison();
  MmaQ8Params p = one_matrix(m.type, m.cols, dx.get(), n, dw.get(), rows, dy.get(), dbias ? dbias->get() : nullptr);
  p.workspace = ws;
  p.workspace_bytes = ws ? ws_bytes : 0;
  EXPECT_TRUE(fathom::cuda::mma_q8_supports(m.type, n, m.cols));
  const fathom::cuda::MmaQ8Plan plan = fathom::cuda::mma_q8_plan(p);
  fathom::cuda::launch_mma_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE(name, dy.download(), want, tol);
  if (ws) expect_counters_zero(ws, name);
  std::printf("[mmq-shape] %s: workspace %zu bytes, %s\n", name.c_str(), ws ? ws_bytes : size_t(0),
              plan_text(plan).c_str());
  return plan;
}

TEST(GpuMmaQ8, LmHeadShape) {
  // The Llama-3-8B LM head, 128256 x 4096 (501 tiles), Q6_K and Q8_0, at 2, 16 and 32 tokens with
  // the engine's workspace: mma_q8_workspace_bytes(min(rows of a batch, 64), 2 n_ff) -- the LM
  // head's rows are not in it, so its 32 MB cap decides (at 32 tokens the tokens run in chunks) --
  // and with the workspace of an engine sized for exactly n tokens. Rows replicate 509 distinct ones.
  FATHOM_REQUIRE_GPU();
  const int64_t rows = 128256, cols = 4096, base_rows = 509, max_n = 32;
  const std::vector<float> x = random_floats(size_t(max_n * cols), 4242);
  DeviceBuffer<float> dx(x);
  Workspace ws64(64, kEngineWsRows);
  for (GgmlType type : {GgmlType::Q6_K, GgmlType::Q8_0}) {
    const HostMat m = make_mat(type, base_rows, cols, 77u + uint32_t(type));
    std::vector<double> want, tol;
    reference(m, x, max_n, want, tol);
    DeviceBuffer<uint8_t> dw;
    upload_replicated(m, rows, dw);
    for (int64_t n : {2, 16, 32}) {
      Workspace wsn(n, kEngineWsRows);
      check_replicated(label("lm_head", type, rows, cols, n) + ",ws=engine(64)", m, dw, rows, dx, n, want, tol,
                       nullptr, {}, ws64.buf.get(), ws64.buf.size());
      check_replicated(label("lm_head", type, rows, cols, n) + ",ws=engine(n)", m, dw, rows, dx, n, want, tol,
                       nullptr, {}, wsn.buf.get(), wsn.buf.size());
    }
  }
}

TEST(GpuMmaQ8, Q6KColumnRule) {
  // Q6_K rows are 210 bytes per 256 weights, so 16-byte rows need cols % 2048 == 0.
  FATHOM_REQUIRE_GPU();
  for (int64_t cols : {2048, 4096, 6144, 14336})
    EXPECT_TRUE(fathom::cuda::mma_q8_supports(GgmlType::Q6_K, 8, cols)) << "cols " << cols;
  for (int64_t cols : {256, 1024, 2560, 3072, 4352, 5120, 7168})
    EXPECT_FALSE(fathom::cuda::mma_q8_supports(GgmlType::Q6_K, 8, cols)) << "cols " << cols;
  MmaQ8Params p;  // launch refuses what supports rejects, before it looks at any pointer
  p.type = GgmlType::Q6_K;
  p.cols = 3072;
  p.n_tokens = 4;
  EXPECT_THROW(fathom::cuda::launch_mma_q8(p, nullptr), fathom::Error);
  // 4096 columns (the Llama-3-8B Q6_K attention / FFN-input rows): every n-tile class.
  for (int64_t n : {1, 2, 8, 17, 33, 64}) check_plain(GgmlType::Q6_K, 333, 4096, n, false, false);
  check_plain(GgmlType::Q6_K, 129, 4096, 5, true, true);
}

TEST(GpuMmaQ8, FusedGateUpSplitK) {
  // 200 gate + 200 up rows over 4096 columns: 2 GLU tiles of 16 stages, so the planner splits K at
  // 17, 33 and 64 tokens (64: x needs several splits to fit shared memory anyway).
  FATHOM_REQUIRE_GPU();
  const int64_t rows = 200, cols = 4096, max_n = 64;
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const HostMat g = make_mat(type, rows, cols, 21u + uint32_t(type));
    const HostMat u = make_mat(type, rows, cols, 22u + uint32_t(type));
    const std::vector<float> x = random_floats(size_t(max_n * cols), 23u + uint32_t(type));
    std::vector<double> wg, tg, wu, tu;  // 64 tokens; n < 64 uses the first n tokens' entries
    reference(g, x, max_n, wg, tg);
    reference(u, x, max_n, wu, tu);
    for (GluKind kind : {GluKind::SWIGLU, GluKind::GEGLU})
      for (int64_t n : {17, 33, 64}) {
        const fathom::cuda::MmaQ8Plan plan = check_glu(kind, g, u, x, n, wg, tg, wu, tu);
        EXPECT_GT(plan.splits, 1) << label("glu", type, rows, cols, n) << " should split K: " << plan_text(plan);
      }
  }
}

TEST(GpuMmaQ8, ManyTilesAndSmallWorkspace) {
  // More than 20 row tiles (rows replicate 300 distinct ones; 40000 rows: several tiles per CTA)
  // with (a) the engine-sized workspace, (b) room for half the splits the planner wanted with it
  // (it must take fewer, or run the tokens in chunks), and at 64 tokens (c) room for 3 splits
  // (x of 64 tokens fits shared memory only with 4+ splits, so the tokens run in chunks) and
  // (d) no workspace (chunks down to where one split fits).
  FATHOM_REQUIRE_GPU();
  struct Case {
    GgmlType type;
    int64_t rows, cols, n;
  };
  const Case cases[] = {{GgmlType::Q4_K, 6000, 4096, 8},  {GgmlType::Q6_K, 6000, 4096, 17},
                        {GgmlType::Q8_0, 5400, 2048, 33}, {GgmlType::Q4_K, 40000, 4096, 4},
                        {GgmlType::Q4_K, 6000, 4096, 64}, {GgmlType::Q6_K, 6000, 4096, 64}};
  const int64_t base_rows = 300;
  for (const Case& c : cases) {
    const uint32_t seed = uint32_t(c.rows + c.n * 7 + int(c.type) * 100);
    const HostMat m = make_mat(c.type, base_rows, c.cols, seed);
    const std::vector<float> x = random_floats(size_t(c.n * c.cols), seed + 1);
    const std::vector<float> bias = random_floats(size_t(c.rows), seed + 2);
    std::vector<double> want, tol;
    reference(m, x, c.n, want, tol);
    DeviceBuffer<uint8_t> dw;
    upload_replicated(m, c.rows, dw);
    DeviceBuffer<float> dx(x), db(bias);
    const int64_t tiles = (c.rows + 255) / 256;
    const std::string name = label("many_tiles", c.type, c.rows, c.cols, c.n);
    Workspace ws(c.n, c.rows);
    const fathom::cuda::MmaQ8Plan full =
        check_replicated(name + ",ws=engine", m, dw, c.rows, dx, c.n, want, tol, &db, bias, ws.buf.get(), ws.buf.size());
    if (full.splits > 1) {
      RawWorkspace half(ws_bytes_for(tiles, std::max(1, full.splits / 2), full.nt));
      const fathom::cuda::MmaQ8Plan pl = check_replicated(name + ",ws=half", m, dw, c.rows, dx, c.n, want, tol, &db,
                                                          bias, half.buf.get(), half.buf.size());
      EXPECT_TRUE(pl.splits < full.splits || pl.nt < full.nt)
          << name << ": half the workspace, yet " << plan_text(pl) << " (engine workspace: " << plan_text(full) << ")";
    }
    if (c.n == 64) {
      RawWorkspace three(ws_bytes_for(tiles, 3, 16));
      const fathom::cuda::MmaQ8Plan pl = check_replicated(name + ",ws=3-splits", m, dw, c.rows, dx, c.n, want, tol,
                                                          nullptr, bias, three.buf.get(), three.buf.size());
      EXPECT_LT(pl.nt, 16) << name << ": expected the tokens in chunks, got " << plan_text(pl);
      const fathom::cuda::MmaQ8Plan none =
          check_replicated(name + ",no-workspace", m, dw, c.rows, dx, c.n, want, tol, &db, bias, nullptr, 0);
      EXPECT_EQ(none.splits, 1);
    }
  }
}

TEST(GpuMmaQ8, CudaGraphReplaysMatchEager) {
  // The engine captures its decode step in a CUDA graph. Four launches -- split-K with bias and
  // residual (Q4_K 1024 x 4096, 12 tokens), split-K fused SwiGLU (Q6_K 200 + 200 x 4096, 17
  // tokens), grouped Q/K/V (Q8_0, 5 tokens) on one shared workspace, and a launch whose 64 tokens
  // run in chunks on a small second workspace (Q4_K 300 x 4096) -- captured once (PDL as the engine
  // launches) and replayed 4 times with new x each time. After every replay the arrival counters are
  // zero, the outputs equal eager launches of the same x bit for bit and differ from the previous
  // replay's; the first replay is also checked against the CPU reference.
  FATHOM_REQUIRE_GPU();
  const int64_t cols = 4096, max_n = 64;
  const int64_t n1 = 12, n2 = 17, n3 = 64, n4 = 5;
  const int64_t r1 = 1024, r2 = 200, r3 = 300;
  const int64_t rq[3] = {512, 128, 128};
  const HostMat m1 = make_mat(GgmlType::Q4_K, r1, cols, 31);
  const HostMat g2 = make_mat(GgmlType::Q6_K, r2, cols, 32);
  const HostMat u2 = make_mat(GgmlType::Q6_K, r2, cols, 33);
  const HostMat m3 = make_mat(GgmlType::Q4_K, r3, cols, 34);
  std::vector<HostMat> mq;
  for (int s = 0; s < 3; ++s) mq.push_back(make_mat(GgmlType::Q8_0, rq[s], cols, 35u + uint32_t(s)));
  const std::vector<float> b1 = random_floats(size_t(r1), 40), res1 = random_floats(size_t(n1 * r1), 41);
  const std::vector<float> bq0 = random_floats(size_t(rq[0]), 42);
  DeviceBuffer<uint8_t> dw1(m1.q), dg2(g2.q), du2(u2.q), dw3(m3.q), dq0(mq[0].q), dq1(mq[1].q), dq2(mq[2].q);
  DeviceBuffer<float> dx(size_t(max_n * cols)), db1(b1), dres1(res1), dbq0(bq0);
  Workspace ws(max_n, r1);
  RawWorkspace ws2(ws_bytes_for((r3 + 255) / 256, 3, 16));
  // Outputs: [0] = graph, [1] = eager; y1, gate out, up scratch, y3, q, k, v.
  constexpr int kOuts = 7;
  const int64_t out_n[kOuts] = {n1 * r1, n2 * r2, n2 * r2, n3 * r3, n4 * rq[0], n4 * rq[1], n4 * rq[2]};
  DeviceBuffer<float> out[2][kOuts];
  for (auto& set : out)
    for (int k = 0; k < kOuts; ++k) set[k].resize(size_t(out_n[k]));

  auto params = [&](int set) {
    std::vector<MmaQ8Params> ps(4);
    DeviceBuffer<float>* o = out[set];
    MmaQ8Params& p1 = ps[0];
    p1.type = GgmlType::Q4_K;
    p1.cols = cols;
    p1.x = dx.get();
    p1.n_tokens = n1;
    p1.seg[0] = MmaQ8Segment{dw1.get(), r1, o[0].get(), db1.get()};
    p1.residual = dres1.get();
    p1.workspace = ws.buf.get();
    p1.workspace_bytes = ws.buf.size();
    MmaQ8Params& p2 = ps[1];
    p2.type = GgmlType::Q6_K;
    p2.cols = cols;
    p2.x = dx.get();
    p2.n_tokens = n2;
    p2.n_seg = 2;
    p2.seg[0] = MmaQ8Segment{dg2.get(), r2, o[1].get(), nullptr};
    p2.seg[1] = MmaQ8Segment{du2.get(), r2, o[2].get(), nullptr};
    p2.glu = true;
    p2.glu_kind = GluKind::SWIGLU;
    p2.workspace = ws.buf.get();
    p2.workspace_bytes = ws.buf.size();
    MmaQ8Params& p3 = ps[2];
    p3.type = GgmlType::Q8_0;
    p3.cols = cols;
    p3.x = dx.get();
    p3.n_tokens = n4;
    p3.n_seg = 3;
    p3.seg[0] = MmaQ8Segment{dq0.get(), rq[0], o[4].get(), dbq0.get()};
    p3.seg[1] = MmaQ8Segment{dq1.get(), rq[1], o[5].get(), nullptr};
    p3.seg[2] = MmaQ8Segment{dq2.get(), rq[2], o[6].get(), nullptr};
    p3.workspace = ws.buf.get();
    p3.workspace_bytes = ws.buf.size();
    MmaQ8Params& p4 = ps[3];
    p4.type = GgmlType::Q4_K;
    p4.cols = cols;
    p4.x = dx.get();
    p4.n_tokens = n3;
    p4.seg[0] = MmaQ8Segment{dw3.get(), r3, o[3].get(), nullptr};
    p4.workspace = ws2.buf.get();
    p4.workspace_bytes = ws2.buf.size();
    return ps;
  };
  {
    const std::vector<MmaQ8Params> ps = params(0);
    const char* what[4] = {"plain", "glu", "qkv", "chunked"};
    for (int i = 0; i < 4; ++i)
      std::printf("[mmq-graph] %s: %s\n", what[i], plan_text(fathom::cuda::mma_q8_plan(ps[size_t(i)])).c_str());
    EXPECT_GT(fathom::cuda::mma_q8_plan(ps[0]).splits, 1) << "the plain launch should split K";
    EXPECT_GT(fathom::cuda::mma_q8_plan(ps[1]).splits, 1) << "the GLU launch should split K";
    EXPECT_LT(fathom::cuda::mma_q8_plan(ps[3]).nt, 16) << "64 tokens on 3 splits' room should run in chunks";
  }
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto launch_all = [&](int set) {
    for (const MmaQ8Params& p : params(set)) fathom::cuda::launch_mma_q8(p, stream);
  };
  auto poison = [&](int set) {
    for (int k = 0; k < kOuts; ++k) out[set][k].poison();
    CUDA_CHECK(cudaDeviceSynchronize());  // the memsets run on the legacy stream
  };
  // Eager first, outside capture (module loading, the shared-memory opt-in and the planner's
  // caches), as the engine's first eager step does.
  dx.upload(random_floats(size_t(max_n * cols), 999));
  launch_all(1);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  launch_all(0);
  CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphDestroy(graph));

  std::vector<std::vector<float>> prev;
  for (int replay = 0; replay < 4; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    const std::vector<float> x = random_floats(size_t(max_n * cols), 1000u + uint32_t(replay));
    dx.upload(x);
    poison(0);
    CUDA_CHECK(cudaGraphLaunch(exec, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaGetLastError());
    expect_counters_zero(ws.buf.get(), "graph replay " + std::to_string(replay) + ", shared workspace");
    expect_counters_zero(ws2.buf.get(), "graph replay " + std::to_string(replay) + ", small workspace");
    std::vector<std::vector<float>> got(kOuts);
    for (int k = 0; k < kOuts; ++k) got[size_t(k)] = out[0][k].download();
    poison(1);
    launch_all(1);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    expect_counters_zero(ws.buf.get(), "eager after replay " + std::to_string(replay) + ", shared workspace");
    expect_counters_zero(ws2.buf.get(), "eager after replay " + std::to_string(replay) + ", small workspace");
    for (int k = 0; k < kOuts; ++k) {
      if (k == 2) continue;  // the GLU's up scratch is not written
      const std::vector<float> eager = out[1][k].download();
      EXPECT_EQ(0, std::memcmp(got[size_t(k)].data(), eager.data(), eager.size() * sizeof(float)))
          << "output " << k << ": graph replay differs from the eager launch";
      if (!prev.empty())
        EXPECT_NE(0, std::memcmp(got[size_t(k)].data(), prev[size_t(k)].data(), eager.size() * sizeof(float)))
            << "output " << k << ": replay did not see the new x";
    }
    if (replay == 0) {
      std::vector<double> want, tol, wg, tg, wu, tu;
      reference(m1, x, n1, want, tol);
      for (int64_t t = 0; t < n1; ++t)
        for (int64_t r = 0; r < r1; ++r) want[size_t(t * r1 + r)] += b1[size_t(r)] + res1[size_t(t * r1 + r)];
      FATHOM_EXPECT_CLOSE("graph plain", got[0], want, tol);
      reference(g2, x, n2, wg, tg);
      reference(u2, x, n2, wu, tu);
      glu_expect(GluKind::SWIGLU, wg, tg, wu, tu, size_t(n2 * r2), want, tol);
      FATHOM_EXPECT_CLOSE("graph glu", got[1], want, tol);
      reference(m3, x, n3, want, tol);
      FATHOM_EXPECT_CLOSE("graph chunked", got[3], want, tol);
      for (int s = 0; s < 3; ++s) {
        reference(mq[size_t(s)], x, n4, want, tol);
        if (s == 0)
          for (int64_t t = 0; t < n4; ++t)
            for (int64_t r = 0; r < rq[0]; ++r) want[size_t(t * rq[0] + r)] += bq0[size_t(r)];
        FATHOM_EXPECT_CLOSE("graph qkv segment " + std::to_string(s), got[size_t(4 + s)], want, tol);
      }
    }
    prev = std::move(got);
  }
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaStreamDestroy(stream));
}

// ---- benchmark ------------------------------------------------------------------------------
// Per shape and token count: kernel time (median over 7 groups of 20 launches, rotating over
// enough weight copies that each launch reads its weights from DRAM, not L2) and weight GB/s,
// next to launch_gemv_q8 where it supports the shape. Run with
//   --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench'
// FATHOM_MMQ_BENCH="TYPE,rows,cols;..." replaces the shape list.

// Random code bytes with finite fp16 scales (1.0) in every block's scale fields.
std::vector<uint8_t> bench_weights(GgmlType type, int64_t rows, int64_t cols) {
  const size_t rb = ggml_row_bytes(type, cols);
  std::vector<uint8_t> w(rb * size_t(rows));
  uint32_t s = 12345u;
  for (size_t i = 0; i < w.size(); ++i) {
    s = s * 1664525u + 1013904223u;
    w[i] = uint8_t(s >> 24);
  }
  const GgmlTypeTraits& tr = ggml_type_traits(type);
  std::vector<int> fields;  // byte offsets of fp16 fields in a block
  switch (type) {
    case GgmlType::Q6_K: fields = {208}; break;
    case GgmlType::Q4_K: case GgmlType::Q5_K: fields = {0, 2}; break;
    case GgmlType::Q4_1: case GgmlType::Q5_1: fields = {0, 2}; break;
    default: fields = {0}; break;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (size_t b = 0; b + tr.block_bytes <= rb; b += tr.block_bytes)
      for (int f : fields) {
        uint8_t* p = w.data() + size_t(r) * rb + b + size_t(f);
        p[0] = 0;
        p[1] = 0x3C;
      }
  return w;
}

// Per-launch time, rotating through `copies` copies of the data: 7 groups of 20 launches, median
// (test_ops_util.h).
template <typename Launch>
double time_us(Launch&& launch, int copies) {
  return median_launch_us([&](int k) { launch(k % copies); }, 3, 7, 20);
}

// FATHOM_MMQ_PROBE=1: one launch with MmaQ8Params::probe (after a few to warm the instruction
// cache, on a weight copy not in L2), its per-CTA phase clocks summarised: start-up, x staging,
// the ring waits (first item apart: its stage was requested before the x staging) and the compute
// between them, as the median CTA and the CTA that ends last.
void probe_report(MmaQ8Params p, const std::vector<DeviceBuffer<uint8_t>>& dw, int copies) {
  using namespace fathom::cuda;
  const MmaQ8Plan plan = mma_q8_plan(p);
  const size_t slots = size_t(plan.grid) * kMmaQ8ProbeSlots;
  DeviceBuffer<unsigned long long> dp(slots);
  std::vector<unsigned long long> h;
  p.probe = dp.get();
  for (int k = 0; k < 4; ++k) {
    p.seg[0].w = dw[size_t((k + 1) % copies)].get();
    CUDA_CHECK(cudaMemset(dp.get(), 0, slots * sizeof(unsigned long long)));
    launch_mma_q8(p, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  h = dp.download();
  struct Cta {
    double total, pdl, x, first_wait, waits, compute, last, start_ns, end_ns;
    int items, sm;
  };
  std::vector<Cta> ctas;
  unsigned long long t0 = ~0ull;
  for (int c = 0; c < plan.grid; ++c) t0 = std::min(t0, h[size_t(c) * kMmaQ8ProbeSlots + kMmaQ8ProbeStartNs]);
  for (int c = 0; c < plan.grid; ++c) {
    const unsigned long long* v = h.data() + size_t(c) * kMmaQ8ProbeSlots;
    const int items = int(v[kMmaQ8ProbeItems_]);
    const double clk = double(v[kMmaQ8ProbeEnd] - v[kMmaQ8ProbeStart]);
    const double ns_per = clk > 0 ? double(v[kMmaQ8ProbeEndNs] - v[kMmaQ8ProbeStartNs]) / clk : 0.0;
    auto us = [&](unsigned long long a, unsigned long long b) { return double(b - a) * ns_per * 1e-3; };
    Cta r{};
    r.items = items;
    r.sm = int(v[kMmaQ8ProbeSm]);
    r.start_ns = double(v[kMmaQ8ProbeStartNs] - t0) * 1e-3;
    r.end_ns = double(v[kMmaQ8ProbeEndNs] - t0) * 1e-3;
    r.total = us(v[kMmaQ8ProbeStart], v[kMmaQ8ProbeEnd]);
    r.pdl = us(v[kMmaQ8ProbeStart], v[kMmaQ8ProbePdl]);
    r.x = us(v[kMmaQ8ProbePdl], v[kMmaQ8ProbeX]);
    const int n = std::min(items, kMmaQ8ProbeItems);
    for (int it = 0; it < n; ++it) {
      const double w = us(v[kMmaQ8ProbeItem0 + 2 * it], v[kMmaQ8ProbeItem0 + 2 * it + 1]);
      if (it == 0) r.first_wait = w;
      else r.waits += w;
      // The last probed item runs to the end: its compute, the items past kMmaQ8ProbeItems, the store.
      if (it + 1 < n) r.compute += us(v[kMmaQ8ProbeItem0 + 2 * it + 1], v[kMmaQ8ProbeItem0 + 2 * it + 2]);
      else r.last = us(v[kMmaQ8ProbeItem0 + 2 * it + 1], v[kMmaQ8ProbeEnd]);
    }
    ctas.push_back(r);
  }
  auto med = [&](double Cta::*f) {
    std::vector<double> xs;
    for (const Cta& c : ctas) xs.push_back(c.*f);
    std::sort(xs.begin(), xs.end());
    return xs[xs.size() / 2];
  };
  const Cta& last = *std::max_element(ctas.begin(), ctas.end(), [](const Cta& a, const Cta& b) { return a.end_ns < b.end_ns; });
  double latest_start = 0.0;
  for (const Cta& c : ctas) latest_start = std::max(latest_start, c.start_ns);
  std::printf("[mmq-probe] n=%ld S=%d grid=%d: start spread %.2f us, end median %.2f last %.2f us (items %d, sm %d)\n",
              long(p.n_tokens), plan.splits, plan.grid, latest_start,
              med(&Cta::end_ns), last.end_ns, last.items, last.sm);
  std::printf("[mmq-probe]   us          total   pdl  x-stage  wait0  waits  compute  last+store\n");
  std::printf("[mmq-probe]   median   %7.2f %5.2f %8.2f %6.2f %6.2f %8.2f %10.2f\n", med(&Cta::total), med(&Cta::pdl),
              med(&Cta::x), med(&Cta::first_wait), med(&Cta::waits), med(&Cta::compute), med(&Cta::last));
  std::printf("[mmq-probe]   last CTA %7.2f %5.2f %8.2f %6.2f %6.2f %8.2f %10.2f\n", last.total, last.pdl, last.x,
              last.first_wait, last.waits, last.compute, last.last);
}

TEST(GpuMmaQ8, DISABLED_Bench) {
  FATHOM_REQUIRE_GPU();
  struct Shape {
    GgmlType type;
    int64_t rows, cols;
  };
  std::vector<Shape> shapes = {
      {GgmlType::Q4_K, 4096, 4096},  {GgmlType::Q4_K, 1024, 4096},  {GgmlType::Q4_K, 14336, 4096},
      {GgmlType::Q4_K, 4096, 14336}, {GgmlType::Q6_K, 4096, 14336}, {GgmlType::Q6_K, 128256, 4096},
      {GgmlType::Q5_K, 4096, 4096},  {GgmlType::Q8_0, 14336, 4096}, {GgmlType::Q4_0, 14336, 4096}};
  if (const char* e = std::getenv("FATHOM_MMQ_BENCH")) {
    shapes.clear();
    std::string spec = e;
    size_t pos = 0;
    while (pos < spec.size()) {
      const size_t end = std::min(spec.find(';', pos), spec.size());
      char tname[16] = {0};
      long r = 0, c = 0;
      if (std::sscanf(spec.substr(pos, end - pos).c_str(), "%15[^,],%ld,%ld", tname, &r, &c) == 3)
        for (GgmlType t : kTypes)
          if (std::string(ggml_type_name(t)) == tname) shapes.push_back({t, r, c});
      pos = end + 1;
    }
  }
  const int64_t max_n = 32;
  std::printf("[mmq-bench] %-5s %6s %6s %3s | %9s %8s %3s %4s | %9s %8s\n", "type", "rows", "cols", "n", "mma us",
              "GB/s", "S", "grid", "gemv us", "GB/s");
  for (const Shape& sh : shapes) {
    const size_t rb = ggml_row_bytes(sh.type, sh.cols);
    const double wbytes = double(rb) * double(sh.rows);
    const int copies = int(std::max<double>(1.0, std::ceil(200e6 / wbytes)));
    const std::vector<uint8_t> w = bench_weights(sh.type, sh.rows, sh.cols);
    std::vector<DeviceBuffer<uint8_t>> dw(static_cast<size_t>(copies));
    for (auto& d : dw) {
      d.resize(w.size());
      d.upload(w);
    }
    const std::vector<float> x = random_floats(size_t(max_n * sh.cols), 5);
    DeviceBuffer<float> dx(x), dy(size_t(max_n * sh.rows));
    Workspace ws(max_n, sh.rows);
    for (int64_t n : {1, 8, 16, 32}) {
      MmaQ8Params p = one_matrix(sh.type, sh.cols, dx.get(), n, dw[0].get(), sh.rows, dy.get());
      p.workspace = ws.buf.get();
      p.workspace_bytes = ws.buf.size();
      const fathom::cuda::MmaQ8Plan plan = fathom::cuda::mma_q8_plan(p);
      const double us = time_us(
          [&](int c) {
            p.seg[0].w = dw[size_t(c)].get();
            fathom::cuda::launch_mma_q8(p, nullptr);
          },
          copies);
      if (std::getenv("FATHOM_MMQ_PROBE") && n > 1) probe_report(p, dw, copies);
      double gus = 0.0;
      if (fathom::cuda::gemv_q8_supports(sh.type, n, sh.cols)) {
        fathom::cuda::GemvQ8Params g;
        g.type = sh.type;
        g.cols = sh.cols;
        g.x = dx.get();
        g.n_tokens = n;
        g.seg[0] = fathom::cuda::GemvQ8Segment{dw[0].get(), sh.rows, dy.get(), nullptr};
        gus = time_us(
            [&](int c) {
              g.seg[0].w = dw[size_t(c)].get();
              fathom::cuda::launch_gemv_q8(g, nullptr);
            },
            copies);
      }
      std::printf("[mmq-bench] %-5s %6ld %6ld %3ld | %9.2f %8.0f %3d %4d | ", ggml_type_name(sh.type), long(sh.rows),
                  long(sh.cols), long(n), us, wbytes / (us * 1e3), plan.splits, plan.grid);
      if (gus > 0.0) std::printf("%9.2f %8.0f\n", gus, wbytes / (gus * 1e3));
      else std::printf("%9s %8s\n", "-", "-");
    }
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace
}  // namespace fathom::test

// The tensor-core small-batch matmul (src/cuda/matmul_mma_q8.cu): every supported type at 1..64
// tokens, odd row counts, split-K with and without a workspace, bias / residual (aliasing y),
// grouped Q/K/V, fused gate/up activation, many tiles per CTA, long rows, bit-identical reruns.
// Reference: double precision from the CPU dequantizer (src/quant). Tolerance: the bound of
// matmul_mma_q8.cuh, sum_i |e_i| max|x_block(i)| / 64516 with e_i = w_i - o_i (o_i = the weight
// of code 0, taken from the CPU dequantizer on a copy of the row with every code zeroed) for the
// types that apply o_i with the exact x sum (Q4_1 Q5_1 Q4_K Q5_K) and e_i = w_i for the others,
// plus 2^-16 of sum (|c_i x_i| + |o_i x_i|) for the fp32 scaling and accumulation (a few hundred
// sub-block terms, each rounded at 2^-24 relative, far under 2^-16).
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

HostMat make_mat(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  HostMat m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  const std::vector<float> wf = random_floats(size_t(rows * cols), seed, 0.5f);
  const size_t rb = ggml_row_bytes(type, cols);
  m.q.resize(rb * size_t(rows));
  m.wd.resize(size_t(rows * cols));
  m.o.assign(size_t(rows * cols), 0.0f);
  std::vector<uint8_t> zrow(rb);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, wf.data() + r * cols, m.q.data() + r * rb, cols);
    dequantize_row(type, m.q.data() + r * rb, m.wd.data() + r * cols, cols);
    if (offset_with_sum(type)) {
      std::memcpy(zrow.data(), m.q.data() + r * rb, rb);
      zero_codes(type, zrow.data(), cols);
      dequantize_row(type, zrow.data(), m.o.data() + r * cols, cols);
    }
  }
  return m;
}

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
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < m.rows; ++r) {
      double s = 0.0, a = 0.0, q = 0.0;
      const float* w = m.wd.data() + r * m.cols;
      const float* o = m.o.data() + r * m.cols;
      const float* xt = x.data() + t * m.cols;
      const double* xm = xmax.data() + t * m.cols;
      for (int64_t k = 0; k < m.cols; ++k) {
        const double wk = w[k], ok = o[k], e = wk - ok;
        s += wk * xt[k];
        a += (std::fabs(e) + std::fabs(ok)) * std::fabs(xt[k]);
        q += std::fabs(e) * xm[k];
      }
      want[size_t(t * m.rows + r)] = s;
      tol[size_t(t * m.rows + r)] = std::ldexp(a, -16) + q / 64516.0 * 1.001 + 1e-6;
    }
}

std::string label(const char* what, GgmlType type, int64_t rows, int64_t cols, int64_t n) {
  return std::string(what) + "(type=" + ggml_type_name(type) + ",rows=" + std::to_string(rows) +
         ",cols=" + std::to_string(cols) + ",n=" + std::to_string(n) + ")";
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
  MmaQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.seg[0] = MmaQ8Segment{dw.get(), rows, dy.get(), bias ? db.get() : nullptr};
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

TEST(GpuMmaQ8, FusedGateUpActivation) {
  FATHOM_REQUIRE_GPU();
  for (GluKind kind : {GluKind::SWIGLU, GluKind::GEGLU})
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0})
      for (int64_t n : {1, 8, 33}) {
        const int64_t rows = 333, cols = 2048;
        SCOPED_TRACE(label(kind == GluKind::SWIGLU ? "swiglu" : "geglu", type, rows, cols, n));
        const HostMat g = make_mat(type, rows, cols, 11u + uint32_t(type));
        const HostMat u = make_mat(type, rows, cols, 12u + uint32_t(type));
        const std::vector<float> x = random_floats(size_t(n * cols), 13u + uint32_t(n));
        std::vector<double> wg, tg, wu, tu;
        reference(g, x, n, wg, tg);
        reference(u, x, n, wu, tu);
        std::vector<double> want(wg.size()), tol(wg.size());
        for (size_t i = 0; i < wg.size(); ++i) {
          const double a = wg[i];
          const double act = kind == GluKind::SWIGLU
                                 ? a / (1.0 + std::exp(-a))
                                 : 0.5 * a * (1.0 + std::tanh(0.7978845608028654 * (a + 0.044715 * a * a * a)));
          want[i] = act * wu[i];
          // |d act/da| <= 1.2 for both on the real line: error of act(g) u + act(g) err(u).
          tol[i] = 1.2 * tg[i] * (std::fabs(wu[i]) + tu[i]) + std::fabs(act) * tu[i] + 1e-5 * std::fabs(want[i]) + 1e-6;
        }
        DeviceBuffer<uint8_t> dg(g.q), du(u.q);
        DeviceBuffer<float> dx(x), dout(size_t(n * rows)), dup(size_t(n * rows));
        dout.poison();
        dup.poison();
        Workspace ws(n, 2 * rows);
        MmaQ8Params p;
        p.type = type;
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
        fathom::cuda::launch_mma_q8(p, nullptr);
        FATHOM_EXPECT_CLOSE("glu", dout.download(), want, tol);
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
  MmaQ8Params p;
  p.type = GgmlType::Q4_K;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.seg[0] = MmaQ8Segment{dw.get(), rows, dy.get(), nullptr};
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
      MmaQ8Params p;
      p.type = sh.type;
      p.cols = sh.cols;
      p.x = dx.get();
      p.n_tokens = n;
      p.seg[0] = MmaQ8Segment{dw[0].get(), sh.rows, dy.get(), nullptr};
      p.workspace = ws.buf.get();
      p.workspace_bytes = ws.buf.size();
      const fathom::cuda::MmaQ8Plan plan = fathom::cuda::mma_q8_plan(p);
      const double us = time_us(
          [&](int c) {
            p.seg[0].w = dw[size_t(c)].get();
            fathom::cuda::launch_mma_q8(p, nullptr);
          },
          copies);
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

// The int8-activation GEMV (src/cuda/matmul_gemv_q8.cu) on its own launcher: grouped matrices
// (Q/K/V with different row counts and biases), the fused gate/up activation, rows that are only
// 2-byte aligned (cols 640 / 768 of the legacy types and Q6_K), the persistent grid (more row
// groups than a wave), multi-chunk x staging, and bit-identical reruns. Reference: double
// precision from the CPU dequantizer; tolerance: the int8 rounding bound of matmul_gemv_q8.cuh,
// sum_k |e_k| max|x_block(k)| / 64516 with e_k the part of w_k that meets the rounded x (the
// scaled code for the types whose offset/min uses the exact x sum, else w_k), plus 2^-16 of the
// magnitudes the fp32 arithmetic handles; derivation in test_q8_bound.h. (Before, the bound used
// |w_k| for every type, which is not a bound for Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K: their codes can
// be ~2x |w_k|.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cuda/matmul_gemv_q8.cuh"
#include "fathom/quant.h"
#include "test_ops_util.h"
#include "test_q8_bound.h"

namespace fathom::test {
namespace {

using fathom::cuda::GemvQ8Params;
using fathom::cuda::GemvQ8Segment;
using fathom::cuda::GluKind;

const GgmlType kQ8Types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                             GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

struct HostMat {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> q;   // quantized bytes
  std::vector<float> wd;    // dequantized
  Q8Parts parts;            // per element: |e_k| and |c_k| + |o_k| of the bound
};

// fn(r0, r1) over [0, rows) in contiguous ranges on up to 16 threads: the host references of the
// large shapes (40001 x 2560, four kernels each) were ~100 s of the GPU suite on one core. Each row
// is computed exactly as before, only concurrently.
template <typename Fn>
void for_rows(int64_t rows, Fn&& fn) {
  const int64_t nt = std::min<int64_t>({16, std::max(1u, std::thread::hardware_concurrency()), (rows + 255) / 256});
  if (nt <= 1) {
    fn(int64_t(0), rows);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < nt; ++t) pool.emplace_back([&, t] { fn(rows * t / nt, rows * (t + 1) / nt); });
  for (std::thread& th : pool) th.join();
}

HostMat make_mat(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  HostMat m;
  m.rows = rows;
  m.cols = cols;
  const std::vector<float> wf = random_floats(size_t(rows * cols), seed, 0.5f);
  const size_t rb = ggml_row_bytes(type, cols);
  m.q.resize(rb * size_t(rows));
  m.wd.resize(size_t(rows * cols));
  for_rows(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      quantize_row(type, wf.data() + r * cols, m.q.data() + r * rb, cols);
      dequantize_row(type, m.q.data() + r * rb, m.wd.data() + r * cols, cols);
    }
  });
  m.parts = q8_parts(type, m.q, m.wd, rows, cols);
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
  for_rows(m.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = r0; r < r1; ++r) {
        double s = 0.0, a = 0.0, q = 0.0;
        for (int64_t k = 0; k < m.cols; ++k) {
          const size_t i = size_t(r * m.cols + k);
          const double xk = x[size_t(t * m.cols + k)];
          s += m.wd[i] * xk;
          a += m.parts.mag[i] * std::fabs(xk);
          q += m.parts.e[i] * xmax[size_t(t * m.cols + k)] / 64516.0;
        }
        want[size_t(t * m.rows + r)] = s;
        tol[size_t(t * m.rows + r)] = std::ldexp(a, -16) + q * 1.001 + 1e-6;
      }
  });
}

std::string label(const char* what, GgmlType type, int64_t cols, int64_t n) {
  return std::string(what) + "(type=" + ggml_type_name(type) + ",cols=" + std::to_string(cols) +
         ",n=" + std::to_string(n) + ")";
}

void check_plain(GgmlType type, int64_t rows, int64_t cols, int64_t n, bool bias, bool residual) {
  const std::string name = label("gemv_q8", type, cols, n) + ",rows=" + std::to_string(rows);
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
  GemvQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.n_seg = 1;
  p.seg[0] = GemvQ8Segment{dw.get(), rows, dy.get(), bias ? db.get() : nullptr};
  p.residual = residual ? dy.get() : nullptr;
  fathom::cuda::launch_gemv_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE(name, dy.download(), want, tol);
}

TEST(GpuGemvQ8, EveryTypeAndBatch) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : kQ8Types)
    for (int64_t n : {1, 2, 3, 5, 8}) check_plain(type, 111, 1536, n, false, false);
}

TEST(GpuGemvQ8, TwoByteAlignedRows) {
  // Row bytes 680 (Q8_0), 440 (Q5_0), 360 (Q4_0), 480 (Q5_1) at cols 640, and Q6_K at cols 768
  // (630 bytes): rows start at every 2-byte offset modulo 16.
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q4_1})
    for (int64_t n : {1, 4}) check_plain(type, 97, 640, n, n == 4, false);
  for (int64_t n : {1, 3}) check_plain(GgmlType::Q6_K, 97, 768, n, false, n == 3);
  check_plain(GgmlType::Q4_K, 97, 768, 2, true, true);
  // Q3_K: 330-byte rows (2-byte aligned blocks of 110); Q2_K: 252-byte rows (4-byte aligned).
  for (int64_t n : {1, 3}) check_plain(GgmlType::Q3_K, 97, 768, n, n == 3, n == 1);
  for (int64_t n : {1, 5}) check_plain(GgmlType::Q2_K, 97, 768, n, n == 1, n == 5);
}

TEST(GpuGemvQ8, LongRowsAndPartialStages) {
  // cols 9216: 4 full stages of 2048 and a partial one of 1024 per row; 14336 (Llama-3-8B
  // ffn_down) at the token counts whose x still fits in shared memory beside the weight rings.
  // Q3_K rows are 16-byte aligned at 14336 (6160 bytes), not at 9216 (3960): both copy paths.
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q2_K,
                        GgmlType::Q3_K})
    for (int64_t cols : {9216, 14336})
      for (int64_t n : {1, 2, 6, 8}) {
        if (!fathom::cuda::gemv_q8_supports(type, n, cols)) {
          EXPECT_GT(n, 1) << "batch 1 must always fit";
          continue;
        }
        check_plain(type, 37, cols, n, false, n == 6);
      }
}

TEST(GpuGemvQ8, PersistentGridManyRows) {
  // 40001 rows at cols 256: far more row groups than one wave of warps (grid-stride loop).
  FATHOM_REQUIRE_GPU();
  check_plain(GgmlType::Q4_K, 40001, 256, 1, true, false);
  check_plain(GgmlType::Q8_0, 40001, 256, 2, false, true);
}

TEST(GpuGemvQ8, Q6kOneTokenDirect) {
  // The register-direct Q6_K kernel (one token, gemv_q6k_direct_kernel): super-blocks at every
  // 2-byte offset modulo 16 (cols 256, 768, 2304: 210 / 630 / 1890-byte rows) and 16-byte aligned
  // rows (2048, 4096, 14336); super-block counts that are not a multiple of the warp's 4 lane
  // groups (1, 3, 9, 56); odd row counts (a group without its second row); the matrix's last
  // 16-byte chunk cut at its end (cols 256 / 768 / 2304); bias and residual; the grid-stride loop
  // (40001 rows of 256: more row groups than a wave).
  FATHOM_REQUIRE_GPU();
  for (int64_t cols : {256, 768, 2048, 2304, 4096, 14336})
    for (int64_t rows : {1, 7, 33}) check_plain(GgmlType::Q6_K, rows, cols, 1, rows == 7, rows == 33);
  check_plain(GgmlType::Q6_K, 40001, 256, 1, true, true);
  check_plain(GgmlType::Q6_K, 1025, 4096, 1, false, true);
}

// Q, K, V as one launch: three segments of one type and cols, rows[s] rows each, biases on
// segments 0 and 2.
void check_qkv(GgmlType type, int64_t cols, const int64_t (&rows)[3], int64_t n) {
  SCOPED_TRACE(label("qkv", type, cols, n) + ",rows=" + std::to_string(rows[0]) + "/" + std::to_string(rows[1]) +
               "/" + std::to_string(rows[2]));
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
  GemvQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.n_seg = 3;
  p.seg[0] = GemvQ8Segment{dw0.get(), rows[0], dy0.get(), db0.get()};
  p.seg[1] = GemvQ8Segment{dw1.get(), rows[1], dy1.get(), nullptr};
  p.seg[2] = GemvQ8Segment{dw2.get(), rows[2], dy2.get(), db2.get()};
  fathom::cuda::launch_gemv_q8(p, nullptr);
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

TEST(GpuGemvQ8, GroupedQkv) {
  FATHOM_REQUIRE_GPU();
  const int64_t rows[3] = {256, 63, 64};
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q2_K})
    for (int64_t n : {1, 4}) check_qkv(type, 1024, rows, n);
}

void check_glu(GluKind kind, GgmlType type, int64_t rows, int64_t cols, int64_t n) {
  SCOPED_TRACE(label(kind == GluKind::SWIGLU ? "swiglu" : "geglu", type, cols, n) + ",rows=" + std::to_string(rows));
  const HostMat g = make_mat(type, rows, cols, 11u + uint32_t(type));
  const HostMat u = make_mat(type, rows, cols, 12u + uint32_t(type));
  const std::vector<float> x = random_floats(size_t(n * cols), 13u + uint32_t(n));
  std::vector<double> wg, tg, wu, tu;
  reference(g, x, n, wg, tg);
  reference(u, x, n, wu, tu);
  std::vector<double> want, tol;
  glu_expect(kind, wg, tg, wu, tu, wg.size(), want, tol);
  DeviceBuffer<uint8_t> dg(g.q), du(u.q);
  DeviceBuffer<float> dx(x), dout(size_t(n * rows)), dup(size_t(n * rows));
  dout.poison();
  GemvQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.n_seg = 2;
  p.seg[0] = GemvQ8Segment{dg.get(), rows, dout.get(), nullptr};
  p.seg[1] = GemvQ8Segment{du.get(), rows, dup.get(), nullptr};
  p.glu = true;
  p.glu_kind = kind;
  fathom::cuda::launch_gemv_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE("glu", dout.download(), want, tol);
}

TEST(GpuGemvQ8, FusedGateUpActivation) {
  FATHOM_REQUIRE_GPU();
  for (GluKind kind : {GluKind::SWIGLU, GluKind::GEGLU})
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_0, GgmlType::Q3_K, GgmlType::Q6_K})
      for (int64_t n : {1, 2, 8}) check_glu(kind, type, 333, 2048, n);
}

// norm_w set: the kernel multiplies against rms_norm(x) * w; the reference normalizes on the
// host in double and the tolerance is the int8 bound on the normalized x.
void check_norm(GgmlType type, int64_t rows, int64_t cols, int64_t n) {
  SCOPED_TRACE(label("rmsnorm", type, cols, n) + ",rows=" + std::to_string(rows));
  const HostMat m = make_mat(type, rows, cols, 77u + uint32_t(type));
  std::vector<float> x = random_floats(size_t(n * cols), 78u + uint32_t(n), 3.0f);
  const std::vector<float> w = random_floats(size_t(cols), 79u);
  const float eps = 1e-5f;
  std::vector<float> xn(x.size());
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0.0;
    for (int64_t k = 0; k < cols; ++k) ss += double(x[size_t(t * cols + k)]) * x[size_t(t * cols + k)];
    const double inv = 1.0 / std::sqrt(ss / double(cols) + eps);
    for (int64_t k = 0; k < cols; ++k) xn[size_t(t * cols + k)] = float(x[size_t(t * cols + k)] * inv * w[size_t(k)]);
  }
  std::vector<double> want, tol;
  reference(m, xn, n, want, tol);
  DeviceBuffer<uint8_t> dw(m.q);
  DeviceBuffer<float> dx(x), dn(w), dy(size_t(n * rows));
  dy.poison();
  GemvQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.seg[0] = GemvQ8Segment{dw.get(), rows, dy.get(), nullptr};
  p.norm_w = dn.get();
  p.norm_eps = eps;
  fathom::cuda::launch_gemv_q8(p, nullptr);
  FATHOM_EXPECT_CLOSE("rmsnorm", dy.download(), want, tol);
  // x itself is left as it was.
  EXPECT_EQ(0, std::memcmp(x.data(), dx.download().data(), x.size() * sizeof(float)));
}

TEST(GpuGemvQ8, FusedRmsNorm) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q6_K})
    for (int64_t n : {1, 3}) check_norm(type, 130, 2560, n);
}

TEST(GpuGemvQ8, Q4kOneTokenEveryKernel) {
  // The one-token Q4_K kernels one after another (bulk-copy ring, pair, shared-memory ring; the
  // engine only ever runs the default): one row with bias and residual; odd rows and cols 2560
  // (10 super-blocks: a full chunk of 8 and a partial one of 2); 40001 rows of 2560 (about 10
  // groups per warp, so the bulk kernel's ring wraps its barrier phases across group boundaries);
  // cols 14336 (7 chunks); the fused gate/up at a real Llama-3-8B row length; the fused RMS norm
  // at cols 14336. Session 13: written after the last GPU run, not yet run on a GPU.
  // Kernel 3 is the bulk kernel with 16-super-block stages (2560 cols: one partial chunk of 10;
  // 14336: three whole and a partial one of 8).
  FATHOM_REQUIRE_GPU();
  for (int k : {0, 1, 2, 3}) {
    SCOPED_TRACE("q4k kernel " + std::to_string(k));
    fathom::cuda::gemv_q8_set_q4k_override(k == 3 ? 0 : k);
    fathom::cuda::gemv_q8_set_q4k_stage_override(k == 3 ? 1 : 0);
    check_plain(GgmlType::Q4_K, 1, 4096, 1, true, true);
    check_plain(GgmlType::Q4_K, 777, 2560, 1, false, true);
    check_plain(GgmlType::Q4_K, 40001, 2560, 1, true, false);
    check_plain(GgmlType::Q4_K, 37, 14336, 1, true, true);
    check_glu(GluKind::SWIGLU, GgmlType::Q4_K, 1000, 4096, 1);
    check_norm(GgmlType::Q4_K, 130, 14336, 1);
  }
  fathom::cuda::gemv_q8_set_q4k_override(-1);
  fathom::cuda::gemv_q8_set_q4k_stage_override(-1);
}

TEST(GpuGemvQ8, Q80OneTokenEveryKernel) {
  // The one-token Q8_0 kernels one after another (0: the bulk-copy ring kernel, 1: the
  // shared-memory-ring kernel; the engine only ever runs the default). cols 256 (8 blocks: one
  // partial stage of the bulk kernel's 64-block chunks, lanes 4..31 idle), 4352 (136 blocks: two
  // full chunks and a partial one), 14336 (448 blocks: 7 full chunks) x rows 1, 7, 333 (a group
  // without its second row) and 4097 (2049 groups, about one per warp of the grid);
  // 40001 rows of 256 (about 10 groups per warp, so the ring's barrier phases wrap across groups
  // of one chunk each); grouped Q/K/V with odd row counts; the fused gate/up (SwiGLU at a Llama-3-8B
  // row length, GeGLU at 2304 = 72 blocks); the fused RMS norm at cols 4096 and 14336 (the batched
  // x staging's several load batches per thread).
  FATHOM_REQUIRE_GPU();
  for (int k : {0, 1}) {
    SCOPED_TRACE("q8_0 kernel " + std::to_string(k));
    fathom::cuda::gemv_q8_set_q80_override(k);
    for (int64_t cols : {256, 4096 + 256, 14336})
      for (int64_t rows : {1, 7, 333, 4097}) check_plain(GgmlType::Q8_0, rows, cols, 1, rows != 333, rows >= 7);
    check_plain(GgmlType::Q8_0, 40001, 256, 1, true, true);
    const int64_t qkv_rows[3] = {4096 / 2 + 1, 63, 1};
    check_qkv(GgmlType::Q8_0, 4096, qkv_rows, 1);
    check_glu(GluKind::SWIGLU, GgmlType::Q8_0, 1001, 4096, 1);
    check_glu(GluKind::GEGLU, GgmlType::Q8_0, 333, 2304, 1);
    check_norm(GgmlType::Q8_0, 130, 4096, 1);
    check_norm(GgmlType::Q8_0, 37, 14336, 1);
  }
  fathom::cuda::gemv_q8_set_q80_override(-1);
}

TEST(GpuGemvQ8, Q6kOneTokenEveryKernel) {
  // The one-token Q6_K kernels one after another (0: the bulk-copy ring kernel, taken for cols %
  // 2048 == 0; 1: the register-direct kernel; the engine only ever runs the default). cols 2048
  // (one 8-super-block chunk, 3-slot ring), 4096 (two chunks, 3 slots), 14336 (seven, 2 slots: the
  // barrier phases wrap inside a group) x rows 1, 7, 333 (a group without its second row) with bias /
  // residual; 4097 x 2048 (2049 groups: about one per warp of the grid); 8449 x 4096 (two groups of
  // two chunks per warp: the 3-slot ring's phases wrap across groups); cols 2304 (9 super-blocks:
  // rows not 16-byte aligned, so the bulk request falls back to the direct kernel); grouped Q/K/V
  // with odd row counts; the fused gate/up (SwiGLU at a Llama-3-8B row length, GeGLU at 2048); the
  // fused RMS norm at cols 4096 and 14336. Sizes are kept down because the host Q6_K quantizer is
  // slow (~60 ns per weight): ~70M weights per kernel.
  FATHOM_REQUIRE_GPU();
  for (int k : {0, 1}) {
    SCOPED_TRACE("q6_k kernel " + std::to_string(k));
    fathom::cuda::gemv_q8_set_q6k_override(k);
    for (int64_t cols : {2048, 4096, 14336})
      for (int64_t rows : {1, 7, 333}) check_plain(GgmlType::Q6_K, rows, cols, 1, rows != 333, rows >= 7);
    check_plain(GgmlType::Q6_K, 4097, 2048, 1, true, false);
    check_plain(GgmlType::Q6_K, 8449, 4096, 1, false, true);
    check_plain(GgmlType::Q6_K, 7, 2304, 1, true, true);
    check_plain(GgmlType::Q6_K, 333, 2304, 1, false, false);
    const int64_t qkv_rows[3] = {4096 / 2 + 1, 63, 1};
    check_qkv(GgmlType::Q6_K, 4096, qkv_rows, 1);
    check_glu(GluKind::SWIGLU, GgmlType::Q6_K, 1001, 4096, 1);
    check_glu(GluKind::GEGLU, GgmlType::Q6_K, 333, 2048, 1);
    check_norm(GgmlType::Q6_K, 130, 4096, 1);
    check_norm(GgmlType::Q6_K, 37, 14336, 1);
  }
  fathom::cuda::gemv_q8_set_q6k_override(-1);
}

TEST(GpuGemvQ8, BitIdenticalReruns) {
  FATHOM_REQUIRE_GPU();
  const int64_t rows = 1024, cols = 4096, n = 3;
  const HostMat m = make_mat(GgmlType::Q4_K, rows, cols, 7);
  const std::vector<float> x = random_floats(size_t(n * cols), 8);
  DeviceBuffer<uint8_t> dw(m.q);
  DeviceBuffer<float> dx(x), dy(size_t(n * rows));
  GemvQ8Params p;
  p.type = GgmlType::Q4_K;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  p.seg[0] = GemvQ8Segment{dw.get(), rows, dy.get(), nullptr};
  fathom::cuda::launch_gemv_q8(p, nullptr);
  const std::vector<float> a = dy.download();
  fathom::cuda::launch_gemv_q8(p, nullptr);
  const std::vector<float> b = dy.download();
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(GpuGemvQ8, RejectsBadArguments) {
  FATHOM_REQUIRE_GPU();
  GemvQ8Params p;
  p.type = GgmlType::Q4_K;
  p.cols = 300;  // not a multiple of 256
  p.n_tokens = 1;
  EXPECT_THROW(fathom::cuda::launch_gemv_q8(p, nullptr), fathom::Error);
  p.cols = 256;
  p.n_tokens = 9;
  EXPECT_THROW(fathom::cuda::launch_gemv_q8(p, nullptr), fathom::Error);
}

}  // namespace
}  // namespace fathom::test

namespace fathom::test {
namespace {

// One shape, many launches, for profilers: FATHOM_Q8_SHAPE="TYPE,rows,cols,n" (default
// Q4_K,14336,4096,1). Run with --gtest_also_run_disabled_tests --gtest_filter='*BenchOne*'.
TEST(GpuGemvQ8, DISABLED_BenchOne) {
  FATHOM_REQUIRE_GPU();
  std::string spec = "Q4_K,14336,4096,1";
  if (const char* e = std::getenv("FATHOM_Q8_SHAPE")) spec = e;
  char tname[16] = {0};
  long rows = 0, cols = 0, n = 0;
  ASSERT_EQ(4, std::sscanf(spec.c_str(), "%15[^,],%ld,%ld,%ld", tname, &rows, &cols, &n)) << spec;
  GgmlType type = GgmlType::Q4_K;
  for (GgmlType t : kQ8Types)
    if (std::string(ggml_type_name(t)) == tname) type = t;
  const size_t rb = ggml_row_bytes(type, cols);
  std::vector<uint8_t> w(rb * size_t(rows));
  for (size_t i = 0; i < w.size(); ++i) w[i] = uint8_t((i * 2654435761u) >> 13);
  for (long r = 0; r < rows; ++r)  // sane fp16 scales: zero the first bytes of every block
    for (size_t b = 0; b + ggml_type_traits(type).block_bytes <= rb; b += ggml_type_traits(type).block_bytes) {
      uint8_t* blk = w.data() + size_t(r) * rb + b;
      // fp16 1.0 in d (and dmin for Q2_K), where the type keeps it.
      const size_t d_at = type == GgmlType::Q6_K ? 208 : type == GgmlType::Q3_K ? 108 : type == GgmlType::Q2_K ? 80 : 0;
      blk[d_at] = 0;
      blk[d_at + 1] = 0x3C;
      if (type == GgmlType::Q2_K) { blk[82] = 0; blk[83] = 0x3C; }
    }
  const std::vector<float> x = random_floats(size_t(n * cols), 5);
  // Each launch reads a different copy of the weights (>= 300 MB in all), so they come from DRAM
  // as in a decode step, not from the 50 MB L2 (one copy of a 33 MB matrix mostly stays there).
  const int copies = int(std::max(1.0, std::ceil(300e6 / double(w.size()))));
  std::vector<DeviceBuffer<uint8_t>> dw(static_cast<size_t>(copies));
  for (auto& d : dw) {
    d.resize(w.size());
    d.upload(w);
  }
  DeviceBuffer<float> dx(x), dy(size_t(n * rows));
  GemvQ8Params p;
  p.type = type;
  p.cols = cols;
  p.x = dx.get();
  p.n_tokens = n;
  // 5 warm-up launches, then the median of 7 groups of 20 back to back (test_ops_util.h).
  const double us = median_launch_us(
      [&](int k) {
        p.seg[0] = GemvQ8Segment{dw[size_t(k % copies)].get(), rows, dy.get(), nullptr};
        fathom::cuda::launch_gemv_q8(p, nullptr);
      },
      5, 7, 20);
  std::printf("[bench-one] %s %ldx%ld n=%ld: %.2f us, %.0f GB/s\n", tname, rows, cols, n, us,
              double(rb) * rows / (us * 1e3));
}

}  // namespace
}  // namespace fathom::test

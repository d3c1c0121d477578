// GPU matmul (GEMV and tiled/cuBLASLt GEMM) against a double-precision reference computed from
// the CPU dequantizer (fathom::dequantize_row), for every supported weight type, odd row counts,
// batches 1..16 (GEMV) and above (GEMM), with and without bias / residual.
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/matmul_gemv_q8.cuh"
#include "cuda/ops.cuh"
#include "fathom/quant.h"
#include "test_ops_util.h"
#include "test_q8_bound.h"

namespace fathom::test {
namespace {

using fathom::cuda::GemmContext;
using fathom::cuda::kGemvMaxTokens;
using fathom::cuda::MatmulParams;

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                           GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                           GgmlType::Q6_K};

struct Problem {
  GgmlType type;
  int64_t rows, cols, batch;
  bool bias, residual;
  std::string name() const {
    return std::string("matmul(type=") + ggml_type_name(type) + ",rows=" + std::to_string(rows) +
           ",cols=" + std::to_string(cols) + ",batch=" + std::to_string(batch) +
           (bias ? ",bias" : "") + (residual ? ",residual" : "") + ")";
  }
};

// Runs one problem through `path` (0 = launch_matmul, 1 = GEMV, 2 = GEMM) and checks it.
// Tolerance per element, from the error model of each path:
//   fp32 accumulation (GEMV): |err| <= K * 2^-24 * sum_k |w_k x_k| in the worst case; the sum
//     here is blocked (32-wide partials then a tree), so we allow 2^-16 * sum|w x| (a few hundred
//     ulps of the l1 mass) -- a wrong index or scale is off by O(|y|).
//   bf16 operands (tiled GEMM): each operand rounds with relative error <= 2^-9, so each product
//     is off by <= ~2^-8 |w x|: tol = 2^-8 * sum|w x| (a strict bound, not a statistical one).
//   fp16 operands (cuBLASLt F16): 2^-10 * sum|w x|; bf16 (cuBLASLt BF16) as the tiled GEMM.
void run_problem(const Problem& pb, int path, const GemmContext* ctx = nullptr) {
  SCOPED_TRACE(pb.name());
  const uint32_t seed = uint32_t(pb.rows * 131 + pb.cols * 7 + pb.batch * 3 + int(pb.type));
  const std::vector<float> wf = random_floats(size_t(pb.rows * pb.cols), seed, 0.5f);
  const size_t row_bytes = ggml_row_bytes(pb.type, pb.cols);
  std::vector<uint8_t> wq(row_bytes * pb.rows);
  std::vector<float> wd(size_t(pb.rows * pb.cols));
  for (int64_t r = 0; r < pb.rows; ++r) {
    quantize_row(pb.type, wf.data() + r * pb.cols, wq.data() + r * row_bytes, pb.cols);
    dequantize_row(pb.type, wq.data() + r * row_bytes, wd.data() + r * pb.cols, pb.cols);
  }
  const std::vector<float> x = random_floats(size_t(pb.batch * pb.cols), seed + 1);
  const std::vector<float> bias = random_floats(size_t(pb.rows), seed + 2);
  const std::vector<float> res = random_floats(size_t(pb.batch * pb.rows), seed + 3);

  double rel;
  switch (path == 2 || (path == 0 && pb.batch > kGemvMaxTokens) ? 2 : 1) {
    case 1: rel = std::ldexp(1.0, -16); break;
    default:
      rel = (ctx && pb.type == GgmlType::F16) ? std::ldexp(1.0, -10) : std::ldexp(1.0, -8);
  }
  // The int8-activation GEMV (quantized types, 1..8 tokens) rounds each x element to its block's
  // two-plane int8 grid: |dx_k| <= max|x_block(k)| / 64516, so it may add
  // sum_k |e_k| max|x_block(k)| / 64516, e_k the part of w_k that meets the rounded x, and its
  // fp32 arithmetic handles magnitudes up to (|c_k| + |o_k|) |x_k| (test_q8_bound.h).
  const bool gemv_path = path == 1 || (path == 0 && pb.batch <= kGemvMaxTokens);
  const bool q8 = gemv_path && fathom::cuda::gemv_q8_supports(pb.type, pb.batch, pb.cols);
  Q8Parts parts;
  if (q8) parts = q8_parts(pb.type, wq, wd, pb.rows, pb.cols);
  std::vector<double> xmax(x.size(), 0.0);
  for (size_t b0 = 0; b0 < x.size(); b0 += 32) {
    double m = 0.0;
    for (size_t i = b0; i < b0 + 32 && i < x.size(); ++i) m = std::max(m, double(std::fabs(x[i])));
    for (size_t i = b0; i < b0 + 32 && i < x.size(); ++i) xmax[i] = m;
  }
  std::vector<double> want(size_t(pb.batch * pb.rows)), tol(want.size());
  for (int64_t t = 0; t < pb.batch; ++t) {
    for (int64_t r = 0; r < pb.rows; ++r) {
      double s = 0.0, a = 0.0, qerr = 0.0;
      for (int64_t k = 0; k < pb.cols; ++k) {
        const double p = double(wd[r * pb.cols + k]) * x[t * pb.cols + k];
        s += p;
        if (q8) {
          const size_t i = size_t(r * pb.cols + k);
          a += parts.mag[i] * std::fabs(double(x[t * pb.cols + k]));
          qerr += parts.e[i] * xmax[size_t(t * pb.cols + k)] / 64516.0;
        } else {
          a += std::fabs(p);
        }
      }
      if (pb.bias) s += bias[r];
      if (pb.residual) s += res[t * pb.rows + r];
      want[t * pb.rows + r] = s;
      tol[t * pb.rows + r] = rel * a + qerr * 1.001 + 1e-6;
    }
  }

  DeviceBuffer<uint8_t> d_w(wq);
  DeviceBuffer<float> d_x(x), d_bias(bias), d_y(size_t(pb.batch * pb.rows));
  if (pb.residual) d_y.upload(res);  // y += x @ W^T (residual aliases y)
  else d_y.poison();
  MatmulParams p;
  p.type = pb.type;
  p.w = d_w.get();
  p.rows = pb.rows;
  p.cols = pb.cols;
  p.x = d_x.get();
  p.y = d_y.get();
  p.n_tokens = pb.batch;
  p.bias = pb.bias ? d_bias.get() : nullptr;
  p.residual = pb.residual ? d_y.get() : nullptr;
  p.gemm = ctx;
  if (path == 0) fathom::cuda::launch_matmul(p, nullptr);
  else if (path == 1) fathom::cuda::launch_matmul_gemv(p, nullptr);
  else fathom::cuda::launch_matmul_gemm(p, nullptr);
  const std::vector<float> got = d_y.download();
  FATHOM_EXPECT_CLOSE(pb.name(), got, want, tol);
}

TEST(GpuMatmul, GemvEveryTypeAndBatch) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : kTypes)
    for (int64_t rows : {111, 500})
      for (int64_t batch : {1, 2, 3, 4, 5, 8, 13, 16})
        run_problem({type, rows, 768, batch, false, false}, 1);
}

TEST(GpuMatmul, GemvLongRowsCrossStageChunks) {
  // cols 9216 > the 8192-element x stage of batch 1: exercises the chunk loop.
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::F16})
    for (int64_t batch : {1, 3, 16}) run_problem({type, 37, 9216, batch, false, false}, 1);
}

TEST(GpuMatmul, GemvBiasAndResidual) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::F32, GgmlType::Q8_0}) {
    run_problem({type, 111, 512, 1, true, false}, 1);
    run_problem({type, 111, 512, 4, false, true}, 1);
    run_problem({type, 111, 512, 7, true, true}, 1);
  }
}

TEST(GpuMatmul, TiledGemmEveryType) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : kTypes)
    for (int64_t batch : {17, 64, 100})
      run_problem({type, 111, 768, batch, batch == 100, batch == 64}, 2);
}

TEST(GpuMatmul, DispatchPicksByBatch) {
  FATHOM_REQUIRE_GPU();
  for (int64_t batch : {1, 16, 17, 33}) run_problem({GgmlType::Q4_K, 70, 512, batch, false, false}, 0);
}

TEST(GpuMatmul, CublasLtHalfWeights) {
  FATHOM_REQUIRE_GPU();
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<uint8_t> workspace(size_t(32) << 20), scratch(size_t(100) * 768 * 2);
  GemmContext ctx;
  ctx.lt = lt;
  ctx.workspace = workspace.get();
  ctx.workspace_bytes = workspace.size();
  ctx.scratch = scratch.get();
  ctx.scratch_bytes = scratch.size();
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
    run_problem({type, 111, 768, 17, false, false}, 2, &ctx);
    run_problem({type, 500, 768, 100, true, true}, 2, &ctx);
  }
  cublasLtDestroy(lt);
}

// Quantized weights through cuBLASLt, one dequantized bf16 chunk of rows at a time. The scratch
// sizes give: 32 rows (under kGemmChunkAlign: the tiled kernel), 64 rows (111 = 64 + 47,
// 500 = 7 x 64 + 52), 128 rows (111 whole; 500 = 3 x 128 + 116), 200 rows (500 = 192 + 192 + 116),
// 1024 rows (both whole). The chunk count is checked so a silent fallback cannot pass.
// Tolerance: bf16 operands, as the tiled GEMM (2^-8 sum|w x|).
TEST(GpuMatmul, CublasLtDequantizedChunks) {
  FATHOM_REQUIRE_GPU();
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  const int64_t cols = 768;
  DeviceBuffer<uint8_t> workspace(size_t(32) << 20), scratch(size_t(100) * cols * 2);
  DeviceBuffer<uint8_t> dequant(size_t(1024) * cols * 2);
  GemmContext ctx;
  ctx.lt = lt;
  ctx.workspace = workspace.get();
  ctx.workspace_bytes = workspace.size();
  ctx.scratch = scratch.get();
  ctx.scratch_bytes = scratch.size();
  ctx.dequant = dequant.get();
  struct Case {
    int64_t budget_rows, want_111, want_500;
  };
  for (const Case& c : {Case{32, 0, 0}, Case{64, 64, 64}, Case{128, 111, 128}, Case{200, 111, 192},
                        Case{1024, 111, 500}}) {
    ctx.dequant_bytes = size_t(c.budget_rows) * cols * 2;
    SCOPED_TRACE("dequant scratch of " + std::to_string(c.budget_rows) + " rows");
    for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                          GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                          GgmlType::Q5_K, GgmlType::Q6_K}) {
      MatmulParams q;
      q.type = type;
      q.rows = 111;
      q.cols = cols;
      q.gemm = &ctx;
      EXPECT_EQ(fathom::cuda::gemm_dequant_chunk_rows(q), c.want_111) << ggml_type_name(type);
      q.rows = 500;
      EXPECT_EQ(fathom::cuda::gemm_dequant_chunk_rows(q), c.want_500) << ggml_type_name(type);
      run_problem({type, 111, cols, 17, false, false}, 2, &ctx);
      run_problem({type, 500, cols, 100, true, true}, 2, &ctx);
      if (c.budget_rows == 64) run_problem({type, 500, cols, 33, true, false}, 2, &ctx);
    }
  }
  // F32 / F16 / BF16 never take this path (F16/BF16 have their own, F32 stays exact-ish).
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    MatmulParams q;
    q.type = type;
    q.rows = 111;
    q.cols = cols;
    q.gemm = &ctx;
    EXPECT_EQ(fathom::cuda::gemm_dequant_chunk_rows(q), 0) << ggml_type_name(type);
  }
  cublasLtDestroy(lt);
}

TEST(GpuMatmul, RejectsUnsupportedType) {
  FATHOM_REQUIRE_GPU();
  MatmulParams p;
  p.type = GgmlType::IQ4_XS;  // readable from a GGUF, no CUDA (or CPU) decoder
  p.rows = 4;
  p.cols = 256;
  p.n_tokens = 1;
  DeviceBuffer<float> buf(1024);
  p.w = buf.get();
  p.x = buf.get();
  p.y = buf.get();
  EXPECT_THROW(fathom::cuda::launch_matmul(p, nullptr), Error);
}

TEST(GpuMatmul, GemvSmallRowsSplitK) {
  // Shapes that make launch_matmul_gemv split each row's units across S warps of a block
  // (choose_ksplit in matmul_gemv.cu). With 7 or 111 rows the grid is far below 2 blocks per SM
  // on any GPU, so S is capped only by the staged units: at batch 1, cols 2048 -> S = 2,
  // 4096 -> S = 4, 8192 -> S = 8, 9216 -> S = 8 with a 32-unit second chunk that only slice 0
  // reads; batch 3 (64-unit chunks) -> S <= 2; batch 16 -> S = 1. The Gemma-3-270M shapes
  // (cols 640, 24 units for the K types at cols 768) stay at S = 1.
  FATHOM_REQUIRE_GPU();
  struct Shape {
    int64_t rows, cols;
  };
  for (GgmlType type : kTypes) {
    const bool k_type = ggml_type_traits(type).block_elems == 256;
    const Shape shapes[] = {{256, k_type ? 768 : 640}, {640, 2048}, {7, 4096}, {111, 8192}, {7, 9216}};
    for (const Shape& sh : shapes)
      for (int64_t batch : {1, 3, 16}) run_problem({type, sh.rows, sh.cols, batch, false, false}, 1);
  }
  // The cross-warp reduction adds bias and residual once per (row, column).
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_0, GgmlType::F16}) {
    run_problem({type, 111, 8192, 1, true, true}, 1);
    run_problem({type, 7, 4096, 2, true, false}, 1);
    run_problem({type, 640, 2048, 3, false, true}, 1);
  }
}

}  // namespace
}  // namespace fathom::test

// The per-shape cuBLASLt plan cache and the timed algorithm pick (matmul_gemm.cu,
// GemmContext::plans): results match the uncached path bit for bit and a double-precision
// reference within the bf16/fp16 operand error, a repeated shape hits the cache, repeated calls
// are bit-identical, gemm_plan_tune's picks are valid and used, and a shape first seen inside
// CUDA graph capture works.
//
// Tolerance (as tests/gpu/test_ops_matmul.cpp derives it): each 16-bit operand rounds with
// relative error <= 2^-9 (bf16) / 2^-11 (fp16), so each product is off by <= ~2^-8 / 2^-10 of
// |w x|, accumulated in fp32: tol = rel * sum_k |w_k x_k| + 1e-6. A wrong algorithm, chunk offset
// or leading dimension is off by O(|y|).
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/ops.cuh"
#include "fathom/quant.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

using cuda::GemmContext;
using cuda::GemmPlanCache;
using cuda::GemmPlanStats;
using cuda::GemmTuneOptions;
using cuda::GemmTuneReport;
using cuda::MatmulParams;

struct Case {
  GgmlType type;
  int64_t rows, cols, batch;
  bool bias, residual;
  std::string name() const {
    return std::string("gemm_plan(type=") + ggml_type_name(type) + ",rows=" + std::to_string(rows) +
           ",cols=" + std::to_string(cols) + ",batch=" + std::to_string(batch) +
           (bias ? ",bias" : "") + (residual ? ",residual" : "") + ")";
  }
};

// The dequant scratch of every test: 200 rows of the widest matrix (1536 cols). Chunks it gives
// (gemm_dequant_chunk_rows): cols 768 -> 400 rows fit, so 500 rows = 256 + 244 (two shapes);
// cols 1536 -> 200 fit, so 1000 rows = 5 x 192 + 40 (two shapes); cols 512 -> 600 fit, 333 whole.
constexpr int64_t kMaxCols = 1536;
constexpr int64_t kMaxBatch = 129;
constexpr size_t kDequantBytes = size_t(200) * kMaxCols * 2;

const Case kCases[] = {
    {GgmlType::F16, 111, 768, 17, false, false},   {GgmlType::BF16, 500, 768, 100, true, true},
    {GgmlType::Q4_K, 500, 768, 100, false, true},  {GgmlType::Q8_0, 333, 512, 61, true, false},
    {GgmlType::Q6_K, 1000, 1536, 129, false, false}, {GgmlType::Q5_0, 64, 256, 33, true, true},
};

// One problem on the device: quantized W, x, bias, residual, y, and the fp64 reference.
struct Problem {
  Case c;
  std::vector<float> x, bias, res;
  std::vector<double> want, tol;
  DeviceBuffer<uint8_t> d_w;
  DeviceBuffer<float> d_x, d_bias, d_y;

  explicit Problem(const Case& cs) : c(cs) {
    const uint32_t seed = uint32_t(c.rows * 131 + c.cols * 7 + c.batch * 3 + int(c.type));
    const std::vector<float> wf = random_floats(size_t(c.rows * c.cols), seed, 0.5f);
    const size_t row_bytes = ggml_row_bytes(c.type, c.cols);
    std::vector<uint8_t> wq(row_bytes * size_t(c.rows));
    std::vector<float> wd(size_t(c.rows * c.cols));
    for (int64_t r = 0; r < c.rows; ++r) {
      quantize_row(c.type, wf.data() + r * c.cols, wq.data() + r * row_bytes, c.cols);
      dequantize_row(c.type, wq.data() + r * row_bytes, wd.data() + r * c.cols, c.cols);
    }
    x = random_floats(size_t(c.batch * c.cols), seed + 1);
    bias = random_floats(size_t(c.rows), seed + 2);
    res = random_floats(size_t(c.batch * c.rows), seed + 3);
    const double rel = c.type == GgmlType::F16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -8);
    want.resize(size_t(c.batch * c.rows));
    tol.resize(want.size());
    for (int64_t t = 0; t < c.batch; ++t)
      for (int64_t r = 0; r < c.rows; ++r) {
        double s = 0.0, a = 0.0;
        for (int64_t k = 0; k < c.cols; ++k) {
          const double p = double(wd[size_t(r * c.cols + k)]) * x[size_t(t * c.cols + k)];
          s += p;
          a += std::fabs(p);
        }
        if (c.bias) s += bias[size_t(r)];
        if (c.residual) s += res[size_t(t * c.rows + r)];
        want[size_t(t * c.rows + r)] = s;
        tol[size_t(t * c.rows + r)] = rel * a + 1e-6;
      }
    d_w.resize(wq.size());
    d_w.upload(wq);
    d_x.resize(x.size());
    d_x.upload(x);
    d_bias.resize(bias.size());
    d_bias.upload(bias);
    d_y.resize(want.size());
  }

  MatmulParams params(const GemmContext* ctx) const {
    MatmulParams p;
    p.type = c.type;
    p.w = d_w.get();
    p.rows = c.rows;
    p.cols = c.cols;
    p.x = d_x.get();
    p.y = d_y.get();
    p.n_tokens = c.batch;
    p.bias = c.bias ? d_bias.get() : nullptr;
    p.residual = c.residual ? d_y.get() : nullptr;  // y += x @ W^T
    p.gemm = ctx;
    return p;
  }

  // y reset (the residual, or NaN bytes), one launch_matmul_gemm on `stream`, y read back.
  std::vector<float> run(const GemmContext* ctx, cudaStream_t stream) {
    CUDA_CHECK(cudaDeviceSynchronize());
    if (c.residual) d_y.upload(res);
    else d_y.poison();
    cuda::launch_matmul_gemm(params(ctx), stream);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    return d_y.download();
  }
};

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Chunks (calls) and distinct chunk shapes (plans) of c under the test's scratch.
struct Calls {
  int64_t calls = 0, shapes = 0;
};
Calls calls_of(const Case& c, const GemmContext& ctx) {
  if (c.type == GgmlType::F16 || c.type == GgmlType::BF16) return {1, 1};
  MatmulParams q;
  q.type = c.type;
  q.rows = c.rows;
  q.cols = c.cols;
  q.gemm = &ctx;
  const int64_t chunk = cuda::gemm_dequant_chunk_rows(q);
  EXPECT_GT(chunk, 0) << c.name() << " would take the tiled kernel";
  if (chunk <= 0) return {};
  const int64_t calls = (c.rows + chunk - 1) / chunk;
  return {calls, c.rows % chunk == 0 ? 1 : 2};
}

class GemmPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    FATHOM_REQUIRE_GPU();
    ASSERT_EQ(cublasLtCreate(&lt_), CUBLAS_STATUS_SUCCESS);
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // The engine's cuBLASLt workspace (kLtWorkspace in engine.cpp): 4 MiB.
    workspace_.resize(size_t(4) << 20);
    scratch_.resize(size_t(kMaxBatch) * kMaxCols * 2);
    dequant_.resize(kDequantBytes);
    base_.lt = lt_;
    base_.workspace = workspace_.get();
    base_.workspace_bytes = workspace_.size();
    base_.scratch = scratch_.get();
    base_.scratch_bytes = scratch_.size();
    base_.dequant = dequant_.get();
    base_.dequant_bytes = dequant_.size();
    base_.dequant_min_elements = 0;
  }
  void TearDown() override {
    for (GemmPlanCache* c : caches_) cuda::gemm_plan_cache_destroy(c);
    if (stream_) cudaStreamDestroy(stream_);
    if (lt_) cublasLtDestroy(lt_);
  }
  // A context with a fresh plan cache (destroyed in TearDown).
  GemmContext cached() {
    GemmContext ctx = base_;
    ctx.plans = cuda::gemm_plan_cache_create();
    caches_.push_back(ctx.plans);
    return ctx;
  }

  cublasLtHandle_t lt_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<uint8_t> workspace_, scratch_, dequant_;
  GemmContext base_;  // no plan cache: descriptors + heuristic per call (the path before)
  std::vector<GemmPlanCache*> caches_;
};

// Cached (heuristic's first pick, as before) == uncached bit for bit, and both match fp64.
TEST_F(GemmPlan, CachedPathMatchesUncachedAndReference) {
  const GemmContext ctx = cached();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    Problem pb(c);
    const std::vector<float> before = pb.run(&base_, stream_);
    const std::vector<float> got = pb.run(&ctx, stream_);
    FATHOM_EXPECT_CLOSE(c.name(), got, pb.want, pb.tol);
    EXPECT_TRUE(bit_identical(got, before)) << "cached result differs from the uncached path";
  }
}

// First call: one miss per distinct chunk shape, a hit for each further chunk of a seen shape;
// second call: all hits, no new plan.
TEST_F(GemmPlan, RepeatedShapeHitsTheCache) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    const GemmContext ctx = cached();
    const Calls k = calls_of(c, ctx);
    Problem pb(c);
    pb.run(&ctx, stream_);
    GemmPlanStats s = cuda::gemm_plan_cache_stats(ctx.plans);
    EXPECT_EQ(s.misses, k.shapes);
    EXPECT_EQ(s.hits, k.calls - k.shapes);
    EXPECT_EQ(s.plans, k.shapes);
    pb.run(&ctx, stream_);
    s = cuda::gemm_plan_cache_stats(ctx.plans);
    EXPECT_EQ(s.misses, k.shapes);
    EXPECT_EQ(s.hits, 2 * k.calls - k.shapes);
    EXPECT_EQ(s.plans, k.shapes);
    EXPECT_EQ(s.timed, 0);
  }
  const GemmPlanStats none = cuda::gemm_plan_cache_stats(nullptr);
  EXPECT_EQ(none.plans + none.hits + none.misses + none.timed, 0);
}

TEST_F(GemmPlan, RepeatedCallsAreBitIdentical) {
  const GemmContext ctx = cached();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    Problem pb(c);
    const std::vector<float> a = pb.run(&ctx, stream_);
    const std::vector<float> b = pb.run(&ctx, stream_);
    EXPECT_TRUE(bit_identical(a, b));
  }
}

// gemm_plan_tune times candidates for every distinct shape once, its picks are then used (hits,
// no misses), valid (reference within tolerance) and deterministic (bit-identical twice).
TEST_F(GemmPlan, TimedPickIsValidAndUsed) {
  const GemmContext ctx = cached();
  std::vector<std::unique_ptr<Problem>> pbs;
  std::vector<MatmulParams> ps;
  int64_t shapes = 0;
  for (const Case& c : kCases) {
    pbs.push_back(std::make_unique<Problem>(c));
    ps.push_back(pbs.back()->params(&ctx));
    shapes += calls_of(c, ctx).shapes;
  }
  // Ignored: GEMV-sized batch, F32 (no cuBLASLt path), no context.
  MatmulParams small = ps[0];
  small.n_tokens = cuda::kGemvMaxTokens;
  MatmulParams f32 = ps[0];
  f32.type = GgmlType::F32;
  MatmulParams no_ctx = ps[0];
  no_ctx.gemm = nullptr;
  ps.push_back(small);
  ps.push_back(f32);
  ps.push_back(no_ctx);

  GemmTuneOptions o;
  o.budget_ms = 60000.0;  // time everything
  const GemmTuneReport r = cuda::gemm_plan_tune(ps.data(), ps.size(), o, stream_);
  std::printf("tune: %lld shapes, %lld timed, %lld candidates, %lld changed, %.1f ms\n",
              (long long)r.shapes, (long long)r.timed, (long long)r.candidates, (long long)r.changed,
              r.wall_ms);
  EXPECT_EQ(r.shapes, shapes);
  EXPECT_EQ(r.timed, shapes);
  EXPECT_GE(r.candidates, r.timed);
  EXPECT_EQ(r.skipped, 0);
  GemmPlanStats s = cuda::gemm_plan_cache_stats(ctx.plans);
  EXPECT_EQ(s.plans, shapes);
  EXPECT_EQ(s.timed, shapes);
  EXPECT_EQ(s.hits + s.misses, 0) << "tuning must not count as use";

  for (auto& pb : pbs) {
    SCOPED_TRACE(pb->c.name());
    const std::vector<float> a = pb->run(&ctx, stream_);
    const std::vector<float> b = pb->run(&ctx, stream_);
    FATHOM_EXPECT_CLOSE(pb->c.name(), a, pb->want, pb->tol);
    EXPECT_TRUE(bit_identical(a, b));
  }
  s = cuda::gemm_plan_cache_stats(ctx.plans);
  EXPECT_EQ(s.misses, 0) << "a tuned shape was not found by the matmul";
  EXPECT_EQ(s.plans, shapes);

  // A second tune times nothing again.
  const GemmTuneReport again = cuda::gemm_plan_tune(ps.data(), ps.size(), o, stream_);
  EXPECT_EQ(again.shapes, shapes);
  EXPECT_EQ(again.timed, 0);

  // FATHOM_GEMM_TUNE=0's mode: plans made, nothing timed.
  const GemmContext ctx0 = cached();
  for (MatmulParams& p : ps)
    if (p.gemm) p.gemm = &ctx0;
  GemmTuneOptions off;
  off.time_candidates = false;
  const GemmTuneReport r0 = cuda::gemm_plan_tune(ps.data(), ps.size(), off, stream_);
  EXPECT_EQ(r0.shapes, shapes);
  EXPECT_EQ(r0.timed, 0);
  EXPECT_EQ(r0.candidates, 0);
  EXPECT_EQ(cuda::gemm_plan_cache_stats(ctx0.plans).plans, shapes);

  // A zero budget: plans made, none timed, all counted as skipped.
  const GemmContext ctx1 = cached();
  for (MatmulParams& p : ps)
    if (p.gemm) p.gemm = &ctx1;
  GemmTuneOptions none;
  none.budget_ms = -1.0;
  const GemmTuneReport r1 = cuda::gemm_plan_tune(ps.data(), ps.size(), none, stream_);
  EXPECT_EQ(r1.shapes, shapes);
  EXPECT_EQ(r1.timed, 0);
  EXPECT_EQ(r1.skipped, shapes);
}

// The first use of a shape inside stream capture (the engine captures decode steps): plan made on
// the host during capture, the replayed graph gives the right answer. gemm_plan_tune during
// capture makes plans without timing.
TEST_F(GemmPlan, FirstUseInsideGraphCapture) {
  const GemmContext ctx = cached();
  for (const Case& c : {kCases[2], kCases[4], kCases[1]}) {
    SCOPED_TRACE(c.name());
    Problem pb(c);
    // Eager run without the cache: loads the kernels (heuristic picks are deterministic, so the
    // same ones) outside capture, as the engine's eager first step does.
    pb.run(&base_, stream_);
    const int64_t misses0 = cuda::gemm_plan_cache_stats(ctx.plans).misses;
    if (c.residual) pb.d_y.upload(pb.res);
    else pb.d_y.poison();
    CUDA_CHECK(cudaDeviceSynchronize());
    const MatmulParams p = pb.params(&ctx);
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const GemmTuneReport tr = cuda::gemm_plan_tune(&p, 1, GemmTuneOptions{}, stream_);
    cuda::launch_matmul_gemm(p, stream_);
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    EXPECT_EQ(tr.timed, 0);
    EXPECT_EQ(tr.shapes, calls_of(c, ctx).shapes);
    EXPECT_EQ(cuda::gemm_plan_cache_stats(ctx.plans).misses, misses0)
        << "gemm_plan_tune made the plans, so the captured matmul only hits";
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUDA_CHECK(cudaGraphLaunch(exec, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    const std::vector<float> got = pb.d_y.download();
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    FATHOM_EXPECT_CLOSE(c.name(), got, pb.want, pb.tol);
  }
  // A plan made by the matmul itself (no tune) during capture.
  const GemmContext fresh = cached();
  Problem pb(kCases[4]);
  pb.run(&base_, stream_);
  pb.d_y.poison();
  CUDA_CHECK(cudaDeviceSynchronize());
  const MatmulParams p = pb.params(&fresh);
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  cuda::launch_matmul_gemm(p, stream_);
  CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  EXPECT_EQ(cuda::gemm_plan_cache_stats(fresh.plans).misses, calls_of(kCases[4], fresh).shapes);
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const std::vector<float> got = pb.d_y.download();
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  FATHOM_EXPECT_CLOSE(kCases[4].name(), got, pb.want, pb.tol);
}

}  // namespace
}  // namespace fathom::test

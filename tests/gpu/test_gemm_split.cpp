// The tiled prefill GEMM's split operands (matmul_gemm.cu gemm_tile_kernel): x and the dequantized
// weights go in as bf16 hi + lo (three MMAs), so each product carries ~2^-16 relative error
// instead of bf16's 2^-8. Checked against a double-precision reference from the CPU dequantizer
// on every type, with two bounds:
//   per element: |err| <= 2^-12 sum|w x| + 1e-6 (split <= ~2^-15 |w x| per product; the fp32
//     accumulation of 3 x 768 products adds ~sqrt(2304) 2^-24 ~ 2^-18.4 of the l1 mass, its
//     worst case 2304 x 2^-23 ~ 2^-11.8 is never approached by random signs);
//   whole output: ||err||_2 <= 1e-4 ||y||_2.
// A CPU emulation of these problems gives, single bf16 operands: l2 ~2.3e-3, worst element
// ~2^-11 of sum|w x| (both bounds fail); split: l2 ~4e-6, worst ~2^-20 (before the fp32
// accumulation), so either bound catches a kernel whose split is off.
// Not run with FATHOM_GEMM_TILE_SPLIT=0 (the single-bf16 kernel kept for A/B runs): skips then.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/ops.cuh"
#include "fathom/cpu_model.h"
#include "fathom/cuda_engine.h"
#include "fathom/quant.h"
#include "test_engine_util.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

using fathom::cuda::MatmulParams;

void check_split(GgmlType type, int64_t rows, int64_t cols, int64_t batch, bool bias) {
  const std::string name = std::string(ggml_type_name(type)) + " rows " + std::to_string(rows) +
                           " cols " + std::to_string(cols) + " batch " + std::to_string(batch);
  SCOPED_TRACE(name);
  const uint32_t seed = uint32_t(rows * 17 + cols * 5 + batch * 3 + int(type) + 1000);
  const std::vector<float> wf = random_floats(size_t(rows * cols), seed, 0.5f);
  const size_t row_bytes = ggml_row_bytes(type, cols);
  std::vector<uint8_t> wq(row_bytes * size_t(rows));
  std::vector<float> wd(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, wf.data() + r * cols, wq.data() + r * row_bytes, cols);
    dequantize_row(type, wq.data() + r * row_bytes, wd.data() + r * cols, cols);
  }
  const std::vector<float> x = random_floats(size_t(batch * cols), seed + 1);
  const std::vector<float> b = random_floats(size_t(rows), seed + 2);
  std::vector<double> want(size_t(batch * rows)), tol(want.size());
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = bias ? b[size_t(r)] : 0.0, a = 0.0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = double(wd[size_t(r * cols + k)]) * x[size_t(t * cols + k)];
        s += p;
        a += std::fabs(p);
      }
      want[size_t(t * rows + r)] = s;
      tol[size_t(t * rows + r)] = std::ldexp(a, -12) + 1e-6;
    }
  DeviceBuffer<uint8_t> d_w(wq);
  DeviceBuffer<float> d_x(x), d_b(b), d_y(size_t(batch * rows));
  d_y.poison();
  MatmulParams p;
  p.type = type;
  p.w = d_w.get();
  p.rows = rows;
  p.cols = cols;
  p.x = d_x.get();
  p.y = d_y.get();
  p.n_tokens = batch;
  p.bias = bias ? d_b.get() : nullptr;
  p.gemm = nullptr;  // no GemmContext: the tiled kernel
  fathom::cuda::launch_matmul_gemm(p, nullptr);
  const std::vector<float> got = d_y.download();
  FATHOM_EXPECT_CLOSE(name, got, want, tol);
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  EXPECT_LE(std::sqrt(num / den), 1e-4) << name << ": relative l2 error of the whole output";
}

TEST(GpuGemmSplit, TiledGemmCarriesSixteenBits) {
  FATHOM_REQUIRE_GPU();
  if (const char* e = std::getenv("FATHOM_GEMM_TILE_SPLIT"); e && std::strcmp(e, "0") == 0)
    GTEST_SKIP() << "FATHOM_GEMM_TILE_SPLIT=0: the single-bf16 tiled kernel";
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                        GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,
                        GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    for (int64_t batch : {17, 64, 100}) check_split(type, 111, 768, batch, batch == 100);
}

// The engine test's step 0 (tests/gpu/test_engine.cpp: seed-7 tiny models, 40-token prompt, logits
// of the last token after the prefill) for the quantized cases, printed so that a run with and one
// without FATHOM_GEMM_TILE_SPLIT=0 measure what the split buys end to end. CPU emulation of the
// GEMM operands alone (tests/test_operand_rounding.cpp): bf16 0.7-1.0e-2, split ~1e-5; the rest of
// the GPU's error is the fp16 KV cache and fp16 prefill attention. Bound: the engine test's 1e-2.
TEST(GpuGemmSplit, EnginePrefillLogitError) {
  SKIP_WITHOUT_GPU();
  struct C {
    const char* shape;
    const char* type;
  };
  for (const C c : {C{"tiny-llama", "Q2_K"}, C{"tiny-llama", "Q4_K"}, C{"tiny-llama", "Q8_0"},
                    C{"tiny-qwen3", "Q2_K"}, C{"tiny-qwen2", "Q3_K"}, C{"tiny-gemma3", "Q3_K"},
                    C{"tiny-llama", "F32"}}) {
    const Model& model = cached_test_model("engine", c.shape, c.type, 7);
    const int64_t V = model.config.n_vocab, n = 40;
    std::vector<int32_t> prompt(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) prompt[size_t(i)] = int32_t((i * 37 + 11) % (V - 300) + 259);
    CudaEngineOptions o;
    o.n_ctx = 128;
    CudaEngine gpu(model, o);
    CpuModel cpu(model, 128, 0);
    std::vector<float> ref(static_cast<size_t>(V)), got(static_cast<size_t>(V));
    cpu.forward(prompt.data(), n, ref.data());
    gpu.eval(prompt.data(), n, got.data());
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
      den += double(ref[i]) * ref[i];
    }
    const double rel = std::sqrt(num / den);
    std::printf("[split] %s %s step 0 relative error %.4g\n", c.shape, c.type, rel);
    EXPECT_LT(rel, 1e-2) << c.shape << " " << c.type;
  }
}

}  // namespace
}  // namespace fathom::test

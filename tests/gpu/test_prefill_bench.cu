// Prefill GEMM side (src/cuda/matmul_gemm.cu, engine.cpp's prefill chunk and FFN slices):
//   GpuPrefill.DequantizeRowsMatchesCpu   the bf16 dequantization of a chunk of rows (whole rows
//                                         and a column slice) against the CPU dequantizer;
//   GpuPrefill.ColumnSliceGemm            launch_matmul_gemm on a column slice of W (w_ld) and
//                                         with x16_ready, against a double-precision reference;
//   GpuPrefill.EngineFfnSlicesMatchWhole  the engine with the FFN intermediate in column slices
//                                         (FATHOM_FFN_SLICE) against the same engine without;
//   GpuPrefill.DISABLED_BenchDequant      run with --gtest_also_run_disabled_tests: the dequant
//     kernel (this version and the previous one, kept below for the A/B) on 14336 x 4096
//     Q4_K / Q6_K / Q8_0 against the copy bandwidth;
//   GpuPrefill.DISABLED_BenchPrefillGemm  cuBLASLt bf16 GEMM TFLOP/s at the Llama-3-8B shapes for
//     M = 512..4096; one 8B layer's seven matmuls quantized vs BF16 per M; and the dequant chunk
//     size (rows per dequant + GEMM step) at M = 512 and 1024.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/matmul_mma_q8.cuh"
#include "cuda/ops.cuh"
#include "cuda/quant_blocks.cuh"
#include "fathom/cuda_engine.h"
#include "fathom/quant.h"
#include "test_engine_util.h"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

using cuda::GemmContext;
using cuda::MatmulParams;

float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Rows [r0, r0 + n) of a (rows, full_cols) quantized matrix, columns [c0, c0 + cols), through
// launch_dequantize_rows_bf16, against the CPU dequantizer: each element within one bf16
// rounding (2^-8 relative) of the fp32 value; unwritten outputs are NaN (poisoned) and fail.
void check_dequant(GgmlType type, int64_t rows, int64_t full_cols, int64_t r0, int64_t n, int64_t c0,
                   int64_t cols) {
  SCOPED_TRACE(std::string("dequant(type=") + ggml_type_name(type) + ",rows=" + std::to_string(rows) +
               ",cols=" + std::to_string(full_cols) + ",r0=" + std::to_string(r0) + ",n=" +
               std::to_string(n) + ",c0=" + std::to_string(c0) + ",slice=" + std::to_string(cols) + ")");
  const std::vector<float> wf = random_floats(size_t(rows * full_cols), uint32_t(rows * 31 + int(type)), 0.5f);
  const size_t row_bytes = ggml_row_bytes(type, full_cols);
  std::vector<uint8_t> wq(row_bytes * size_t(rows));
  std::vector<float> wd(size_t(rows * full_cols));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, wf.data() + r * full_cols, wq.data() + r * row_bytes, full_cols);
    dequantize_row(type, wq.data() + r * row_bytes, wd.data() + r * full_cols, full_cols);
  }
  DeviceBuffer<uint8_t> d_w(wq);
  DeviceBuffer<uint16_t> d_out(size_t(n * cols));
  d_out.poison();
  const GgmlTypeTraits& t = ggml_type_traits(type);
  const uint8_t* w = d_w.get() + size_t(c0 / t.block_elems) * t.block_bytes;
  cuda::launch_dequantize_rows_bf16(type, w, int64_t(row_bytes), r0, n, cols, d_out.get(), nullptr);
  CUDA_CHECK(cudaGetLastError());
  const std::vector<uint16_t> got = d_out.download();
  int64_t bad = 0, first_bad = -1;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float want = wd[size_t((r0 + r) * full_cols + c0 + c)];
      const float g = bf16_to_float(got[size_t(r * cols + c)]);
      if (!(std::fabs(g - want) <= std::ldexp(std::fabs(want), -8) + 1e-30f)) {
        if (first_bad < 0) {
          first_bad = r * cols + c;
          ADD_FAILURE() << "element (" << r << ", " << c << "): got " << g << " want " << want;
        }
        ++bad;
      }
    }
  EXPECT_EQ(bad, 0);
}

TEST(GpuPrefill, DequantizeRowsMatchesCpu) {
  FATHOM_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                        GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                        GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
    check_dequant(type, 37, 768, 0, 37, 0, 768);    // whole matrix
    check_dequant(type, 37, 768, 5, 29, 0, 768);    // a chunk of rows
    check_dequant(type, 37, 768, 3, 31, 256, 512);  // rows x a column slice (FFN down slices)
    if (ggml_type_traits(type).block_elems <= 32) check_dequant(type, 9, 96, 1, 7, 32, 32);
  }
}

// y (+)= x @ W[:, c0:c0+cols]^T for W (rows, full_cols) in `type`, through launch_matmul_gemm with
// w_ld = full_cols, and then a second W (another slice, other rows) on the same x with x16_ready
// (the scratch holds x from the first call). Reference in double from the CPU-dequantized W;
// tolerance as tests/gpu/test_ops_matmul.cpp: 2^-8 sum|w x| for bf16 operands (2^-10 for F16).
TEST(GpuPrefill, ColumnSliceGemm) {
  FATHOM_REQUIRE_GPU();
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  const int64_t rows = 96, full_cols = 768, n = 40;
  DeviceBuffer<uint8_t> workspace(size_t(4) << 20), scratch(size_t(n) * full_cols * 2);
  DeviceBuffer<uint8_t> dequant(size_t(rows) * full_cols * 2);
  GemmContext ctx;
  ctx.lt = lt;
  ctx.workspace = workspace.get();
  ctx.workspace_bytes = workspace.size();
  ctx.scratch = scratch.get();
  ctx.scratch_bytes = scratch.size();
  ctx.dequant = dequant.get();
  ctx.dequant_bytes = size_t(64) * full_cols * 2;  // 96 rows = 2 chunks of 64 + 32 when 768 wide
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16,
                        GgmlType::BF16}) {
    const std::vector<float> wf = random_floats(size_t(rows * full_cols), uint32_t(7 + int(type)), 0.5f);
    const size_t row_bytes = ggml_row_bytes(type, full_cols);
    std::vector<uint8_t> wq(row_bytes * size_t(rows));
    std::vector<float> wd(size_t(rows * full_cols));
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(type, wf.data() + r * full_cols, wq.data() + r * row_bytes, full_cols);
      dequantize_row(type, wq.data() + r * row_bytes, wd.data() + r * full_cols, full_cols);
    }
    DeviceBuffer<uint8_t> d_w(wq);
    const GgmlTypeTraits& t = ggml_type_traits(type);
    const double rel = type == GgmlType::F16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -8);
    // Two calls: columns [256, 768) of all rows with a residual, then columns [0, 512) of rows
    // [32, 96) reusing the converted x (x16_ready).
    struct Call {
      int64_t r0, nr, c0, cols;
      bool residual, reuse;
    };
    const Call calls[2] = {{0, rows, 256, 512, true, false}, {32, 64, 0, 512, false, true}};
    const std::vector<float> x = random_floats(size_t(n * 512), uint32_t(100 + int(type)));
    DeviceBuffer<float> d_x(x);
    for (const Call& c : calls) {
      SCOPED_TRACE(std::string(ggml_type_name(type)) + " rows " + std::to_string(c.r0) + "+" +
                   std::to_string(c.nr) + " cols " + std::to_string(c.c0) + "+" + std::to_string(c.cols) +
                   (c.reuse ? " x16_ready" : ""));
      const std::vector<float> res = random_floats(size_t(n * c.nr), uint32_t(200 + int(type)));
      std::vector<double> want(size_t(n * c.nr)), tol(want.size());
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < c.nr; ++r) {
          double s = c.residual ? res[size_t(i * c.nr + r)] : 0.0, a = 0.0;
          for (int64_t k = 0; k < c.cols; ++k) {
            const double p = double(wd[size_t((c.r0 + r) * full_cols + c.c0 + k)]) * x[size_t(i * c.cols + k)];
            s += p;
            a += std::fabs(p);
          }
          want[size_t(i * c.nr + r)] = s;
          tol[size_t(i * c.nr + r)] = rel * a + 1e-6;
        }
      DeviceBuffer<float> d_y(want.size());
      if (c.residual) d_y.upload(res);
      else d_y.poison();
      MatmulParams p;
      p.type = type;
      p.w = d_w.get() + size_t(c.r0) * row_bytes + size_t(c.c0 / t.block_elems) * t.block_bytes;
      p.rows = c.nr;
      p.cols = c.cols;
      p.w_ld = full_cols;
      p.x = d_x.get();
      p.y = d_y.get();
      p.n_tokens = n;
      p.residual = c.residual ? d_y.get() : nullptr;
      p.gemm = &ctx;
      p.x16_ready = c.reuse;
      EXPECT_NE(cuda::gemm_x16_kind(p), 0);
      cuda::launch_matmul_gemm(p, nullptr);
      const std::vector<float> got = d_y.download();
      FATHOM_EXPECT_CLOSE("column slice gemm", got, want, tol);
    }
  }
  cublasLtDestroy(lt);
}

// Scoped environment variable (the engine reads FATHOM_* at load).
std::vector<int32_t> prompt_of(int64_t n, int64_t n_vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 53 + 7) % (n_vocab - 300) + 259);
  return p;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * b[i];
  }
  return std::isfinite(num) && den > 0 ? std::sqrt(num / den) : INFINITY;
}

// The FFN in slices of 256 columns (tiny-llama n_ff 768: 3 slices; tiny-gemma3 512: 2, with its
// post-FFN norm, where the first slice writes `a` and the others add to it) gives the logits of
// the whole FFN up to the rounding noise of bf16/fp16 operands: the down projection's fp32 sums
// are ordered differently, which flips bf16 roundings of the next layer's inputs (H200,
// 603e0e2: 2e-4 (tiny-llama F16) .. 3e-3 (tiny-gemma3 Q4_K_M) relative). A wrong slice offset or
// stride changes a third of the FFN output: O(0.1) or more. Quantized types with
// FATHOM_DEQUANT_MIN_ELEMENTS=0 take the dequantized-chunk cuBLASLt path, so the slices exercise
// its row slices and the strided (w_ld) column slices of W_down; F16 takes the direct cuBLASLt
// path with lda = n_ff. (The exact GEMM-level check is ColumnSliceGemm.) The bf16 mma_q8 variant is
// held off: with every matrix dequant-sized the engine would give it the whole-FFN Q4_K matmuls of
// these 61 tokens (mmq_route), and the test compares the dequantized path with itself.
TEST(GpuPrefill, EngineFfnSlicesMatchWhole) {
  SKIP_WITHOUT_GPU();
  ScopedEnv all_dequant("FATHOM_DEQUANT_MIN_ELEMENTS", "0");
  struct NoBf16 {
    NoBf16() { fathom::cuda::mma_q8_set_bf16_min_tokens(int(fathom::cuda::kMmaQ8MaxTokens) + 1); }
    ~NoBf16() { fathom::cuda::mma_q8_set_bf16_min_tokens(0); }
  } no_bf16;
  struct Case {
    const char* shape;
    const char* type;
  };
  for (const Case& c : {Case{"tiny-llama", "F16"}, Case{"tiny-llama", "Q4_K"}, Case{"tiny-llama", "Q8_0"},
                        Case{"tiny-gemma3", "F16"}, Case{"tiny-gemma3", "Q4_K_M"}}) {
    SCOPED_TRACE(std::string(c.shape) + " " + c.type);
    const Model& model = cached_test_model("prefill", c.shape, c.type, 7);
    const int64_t V = model.config.n_vocab;
    CudaEngineOptions o;
    o.n_ctx = 128;
    o.ubatch = 64;
    const std::vector<int32_t> p = prompt_of(61, V);
    std::vector<float> whole(static_cast<size_t>(V)), sliced(static_cast<size_t>(V));
    {
      ScopedEnv no_slice("FATHOM_FFN_SLICE", nullptr);
      CudaEngine e(model, o);
      e.eval(p.data(), int64_t(p.size()), whole.data());
    }
    {
      ScopedEnv slice("FATHOM_FFN_SLICE", "256");
      CudaEngine e(model, o);
      e.eval(p.data(), int64_t(p.size()), sliced.data());
      // A decode step after the sliced prefill (one token: the GEMV, never sliced).
      const int32_t next = p[3];
      std::vector<float> step(static_cast<size_t>(V));
      e.eval(&next, 1, step.data());
      for (float f : step) ASSERT_TRUE(std::isfinite(f));
    }
    const double rel = rel_diff(sliced, whole);
    EXPECT_LT(rel, 1e-2) << "sliced vs whole FFN logits";
    std::printf("[prefill] %s %s: sliced vs whole FFN logits, relative %.3g\n", c.shape, c.type, rel);
  }
}

// ---- benchmark ---------------------------------------------------------------------------------

// The dequantization kernel before this version (commit e4f65d8), for the A/B: one thread per
// 32-element unit, four 16-byte stores 64 bytes apart across the warp.
template <GgmlType T>
__global__ void __launch_bounds__(256)
    dequantize_rows_bf16_v1_kernel(const uint8_t* w, int64_t row_bytes, int64_t r0, int64_t n_rows,
                                   int64_t n_units, __nv_bfloat16* out) {
  const int64_t n = n_rows * n_units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / n_units, u = i - r * n_units;
    float v[32];
    cuda::dequant_unit<T>(w + (r0 + r) * row_bytes, u, v);
    __align__(16) __nv_bfloat162 h[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
    const uint4* src = reinterpret_cast<const uint4*>(h);
    uint4* dst = reinterpret_cast<uint4*>(out + i * cuda::kUnit);
#pragma unroll
    for (int q = 0; q < 4; ++q) dst[q] = src[q];
  }
}

void launch_dequant_v1(GgmlType type, const void* w, int64_t row_bytes, int64_t n_rows, int64_t cols, void* out) {
  const int64_t n_units = cols / cuda::kUnit;
  const int64_t n = n_rows * n_units;
  const unsigned grid = unsigned(std::min<int64_t>((n + 255) / 256, 16384));
  const bool ok = cuda::dispatch_qtype(type, [&](auto tc) {
    dequantize_rows_bf16_v1_kernel<decltype(tc)::value><<<grid, 256>>>(
        static_cast<const uint8_t*>(w), row_bytes, 0, n_rows, n_units, static_cast<__nv_bfloat16*>(out));
  });
  ASSERT_TRUE(ok);
  CUDA_CHECK(cudaGetLastError());
}

// Per-launch time: `inner` launches between two events, median over `reps` (test_ops_util.h).
template <typename F>
double median_us(F&& launch, int warmup = 3, int reps = 11, int inner = 5) {
  return median_launch_us(launch, warmup, reps, inner);
}

// Random bytes with fp16/bf16 exponents kept moderate (no inf/NaN scales, no zeros).
std::vector<uint8_t> bench_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t r = (rng() & 0x3B3B3B3B3B3B3B3Bull) | 0x0101010101010101ull;
    std::memcpy(&v[i], &r, 8);
  }
  return v;
}

struct Shape {
  const char* name;
  int64_t rows, cols;
};
// One Llama-3-8B layer: (rows, cols) of W for y = x @ W^T.
const Shape kLayer[] = {{"q", 4096, 4096},   {"k", 1024, 4096},    {"v", 1024, 4096},  {"o", 4096, 4096},
                        {"gate", 14336, 4096}, {"up", 14336, 4096}, {"down", 4096, 14336}};

constexpr size_t kPool = size_t(1) << 30;

// -- 1. dequantization of a 14336 x 4096 matrix to bf16 (117 MB written): v1 vs this version.
// Weights rotate over copies spread through the 1 GiB pool, so reads come from HBM; the output
// (117 MB) is over twice the L2.
TEST(GpuPrefill, DISABLED_BenchDequant) {
  FATHOM_REQUIRE_GPU();
  DeviceBuffer<uint8_t> pool(bench_bytes(kPool)), pool2(kPool);
  const double copy_us = median_us([&](int) {
    CUDA_CHECK(cudaMemcpyAsync(pool2.get(), pool.get(), kPool, cudaMemcpyDeviceToDevice));
  }, 1, 5, 1);
  const double copy_gbs = 2.0 * kPool / (copy_us * 1e-6) / 1e9;
  std::printf("\n[prefill] D2D copy 1 GiB: %.1f us, %.0f GB/s (read + write)\n", copy_us, copy_gbs);
  const int64_t R = 14336, K = 4096;
  DeviceBuffer<uint8_t> dq(size_t(R) * K * 2);
  std::printf("[prefill] dequant %lldx%lld -> bf16: %-5s %9s %9s %9s %8s %6s\n", (long long)R, (long long)K, "type",
              "read MB", "write MB", "us", "GB/s", "%copy");
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const size_t rb = ggml_row_bytes(type, K);
    const size_t bytes = rb * size_t(R);
    const size_t stride = (bytes + 4095) / 4096 * 4096;
    const int copies = int(std::max<size_t>(1, std::min<size_t>(8, kPool / stride)));
    const double moved = double(bytes) + double(R) * K * 2;
    for (int version = 1; version <= 2; ++version) {
      const double us = median_us([&](int i) {
        const uint8_t* w = pool.get() + size_t(i % copies) * stride;
        if (version == 1) launch_dequant_v1(type, w, int64_t(rb), R, K, dq.get());
        else cuda::launch_dequantize_rows_bf16(type, w, int64_t(rb), 0, R, K, dq.get(), nullptr);
      });
      const double gbs = moved / (us * 1e-6) / 1e9;
      std::printf("[prefill] dequant v%d %-5s %9.1f %9.1f %9.1f %8.0f %5.0f%%\n", version, ggml_type_name(type),
                  bytes / 1e6, double(R) * K * 2 / 1e6, us, gbs, 100.0 * gbs / copy_gbs);
    }
  }
}

TEST(GpuPrefill, DISABLED_BenchPrefillGemm) {
  FATHOM_REQUIRE_GPU();
  DeviceBuffer<uint8_t> pool(bench_bytes(kPool));
  DeviceBuffer<uint8_t> dq(size_t(14336) * 4096 * 2);

  // -- 2. cuBLASLt bf16 GEMM (x already bf16: x16_ready) at the 8B shapes, M = 512 .. 4096.
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  const int64_t kMaxM = 4096, kMaxCols = 14336;
  DeviceBuffer<uint8_t> lt_ws(size_t(4) << 20);  // the engine's cuBLASLt workspace
  DeviceBuffer<uint8_t> scratch(size_t(kMaxM) * kMaxCols * 2);
  DeviceBuffer<float> x(random_floats(size_t(kMaxM) * kMaxCols, 3u));
  DeviceBuffer<float> y(size_t(kMaxM) * kMaxCols);
  GemmContext ctx;
  ctx.lt = lt;
  ctx.workspace = lt_ws.get();
  ctx.workspace_bytes = lt_ws.size();
  ctx.scratch = scratch.get();
  ctx.scratch_bytes = scratch.size();
  ctx.dequant = dq.get();
  ctx.dequant_bytes = dq.size();
  ctx.plans = cuda::gemm_plan_cache_create();
  // One matmul of `type` through launch_matmul_gemm; weights from the pool (rotating copies).
  auto time_matmul = [&](GgmlType type, const Shape& s, int64_t m, bool x16_ready, size_t dequant_bytes) {
    const size_t bytes = ggml_row_bytes(type, s.cols) * size_t(s.rows);
    const size_t stride = (bytes + 4095) / 4096 * 4096;
    const int copies = int(std::max<size_t>(1, std::min<size_t>(8, kPool / stride)));
    ctx.dequant_bytes = dequant_bytes;
    MatmulParams p;
    p.type = type;
    p.rows = s.rows;
    p.cols = s.cols;
    p.x = x.get();
    p.y = y.get();
    p.n_tokens = m;
    p.gemm = &ctx;
    // Convert x once so x16_ready reads a valid bf16 x.
    p.w = pool.get();
    cuda::launch_matmul_gemm(p, nullptr);
    p.x16_ready = x16_ready;
    return median_us([&](int i) {
      p.w = pool.get() + size_t(i % copies) * stride;
      cuda::launch_matmul_gemm(p, nullptr);
    });
  };
  std::printf("[prefill] cuBLASLt bf16 GEMM (x already bf16), TFLOP/s:\n[prefill] %-6s %-12s", "W", "rows x cols");
  const int64_t ms[] = {512, 1024, 2048, 4096};
  for (int64_t m : ms) std::printf(" %9s", ("M=" + std::to_string(m)).c_str());
  std::printf("\n");
  for (const Shape& s : kLayer) {
    if (std::strcmp(s.name, "v") == 0 || std::strcmp(s.name, "up") == 0 || std::strcmp(s.name, "o") == 0) continue;
    std::printf("[prefill] %-6s %5lldx%-6lld", s.name, (long long)s.rows, (long long)s.cols);
    for (int64_t m : ms) {
      const double us = time_matmul(GgmlType::BF16, s, m, true, dq.size());
      std::printf(" %9.0f", 2.0 * m * s.rows * s.cols / (us * 1e-6) / 1e12);
    }
    std::printf("\n");
  }

  // -- 3. one 8B layer's seven matmuls: BF16 vs quantized (dequant scratch holding the largest
  // matrix whole), x converted once per matmul (as the engine did before x16 reuse).
  std::printf("[prefill] one 8B layer (7 matmuls incl. x conversion), us per layer and us per token:\n");
  std::printf("[prefill] %6s %10s %10s %10s %10s %8s %8s\n", "M", "BF16", "Q4_K", "Q6_K", "Q8_0", "Q4_K/BF16",
              "us/tok Q4_K-BF16");
  for (int64_t m : ms) {
    double t[4] = {0, 0, 0, 0};
    const GgmlType types[4] = {GgmlType::BF16, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0};
    for (int i = 0; i < 4; ++i)
      for (const Shape& s : kLayer) t[i] += time_matmul(types[i], s, m, false, dq.size());
    std::printf("[prefill] %6lld %10.1f %10.1f %10.1f %10.1f %8.3f %8.4f\n", (long long)m, t[0], t[1], t[2], t[3],
                t[1] / t[0], (t[1] - t[0]) / double(m));
  }

  // -- 4. rows per dequant + GEMM step for the 14336 x 4096 Q4_K gate at M = 512 and 1024: a
  // chunk small enough to stay in the 50 MB L2 between its dequant and its GEMM saves the HBM
  // round trip of the bf16 copy, but gives the GEMM fewer output tiles.
  std::printf("[prefill] Q4_K 14336x4096 by dequant chunk rows (x already bf16), us:\n[prefill] %6s", "M");
  const int64_t chunk_rows[] = {14336, 7168, 3584, 2048, 1024};
  for (int64_t cr : chunk_rows) std::printf(" %8lld", (long long)cr);
  std::printf(" %8s\n", "BF16");
  for (int64_t m : {int64_t(512), int64_t(1024)}) {
    std::printf("[prefill] %6lld", (long long)m);
    for (int64_t cr : chunk_rows)
      std::printf(" %8.1f", time_matmul(GgmlType::Q4_K, kLayer[4], m, true, size_t(cr) * 4096 * 2));
    std::printf(" %8.1f\n", time_matmul(GgmlType::BF16, kLayer[4], m, true, dq.size()));
  }
  cuda::gemm_plan_cache_destroy(ctx.plans);
  cublasLtDestroy(lt);
}

}  // namespace
}  // namespace fathom::test

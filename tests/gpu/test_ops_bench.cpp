// Kernel benchmark (disabled by default; run with
//   fathom_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Bench*').
// GEMV per weight type at the Llama-3-8B shapes, batch 1 (and 4/16 for Q4_K), reported as GB/s
// of weight bytes against the copy bandwidth measured in the same run (a 1 GiB device-to-device
// copy counting bytes read + written). Weights rotate over several copies spanning > 4x the L2
// so every launch streams from HBM. 20 back-to-back launches per event pair; median of 15.
// Also: the tiled GEMM and cuBLASLt at 512 tokens (TFLOP/s), and decode attention.
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/ops.cuh"
#include "test_ops_util.h"

namespace fathom::test {
namespace {

constexpr size_t kPoolBytes = size_t(1) << 30;

// Per-launch time, 20 launches per event pair, median of 15 (test_ops_util.h).
template <typename F>
float median_us(F&& launch, int warmup = 5, int reps = 15, int inner = 20) {
  return float(median_launch_us(launch, warmup, reps, inner));
}

// Random bytes everywhere; fp16 scales made finite by clearing the top exponent bit pattern
// is unnecessary for timing (the arithmetic runs at the same speed on NaN), but zeros are avoided.
std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t r = rng() & 0x3B3B3B3B3B3B3B3Bull;  // keep fp16/bf16 exponents moderate
    std::memcpy(&v[i], &r, 8);
  }
  return v;
}

TEST(GpuBench, DISABLED_BenchKernels) {
  FATHOM_REQUIRE_GPU();
  DeviceBuffer<uint8_t> pool(random_bytes(kPoolBytes));
  DeviceBuffer<uint8_t> pool2(kPoolBytes);
  const float copy_us = median_us([&](int) {
    CUDA_CHECK(cudaMemcpyAsync(pool2.get(), pool.get(), kPoolBytes, cudaMemcpyDeviceToDevice));
  }, 2, 7, 1);
  const double copy_gbs = 2.0 * kPoolBytes / (copy_us * 1e-6) / 1e9;
  std::printf("\n[bench] D2D copy 1 GiB: %.1f us, %.0f GB/s (read+write)\n", copy_us, copy_gbs);

  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                            GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  const int64_t shapes[][2] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
  DeviceBuffer<float> x(random_floats(size_t(16) * 14336, 1u)), y(size_t(512) * 14336);
  std::printf("[bench] %-5s %-12s %5s %10s %9s %8s %6s\n", "type", "rows x cols", "batch", "MB",
              "us", "GB/s", "%copy");
  for (GgmlType type : types) {
    for (const auto& sh : shapes) {
      for (int64_t batch : {int64_t(1), int64_t(4), int64_t(16)}) {
        if (batch > 1 && type != GgmlType::Q4_K && type != GgmlType::Q8_0) continue;
        const size_t bytes = ggml_row_bytes(type, sh[1]) * size_t(sh[0]);
        const size_t stride = (bytes + 255) / 256 * 256;
        const int copies = int(std::max<size_t>(1, std::min<size_t>(16, kPoolBytes / stride)));
        cuda::MatmulParams p;
        p.type = type;
        p.rows = sh[0];
        p.cols = sh[1];
        p.x = x.get();
        p.y = y.get();
        p.n_tokens = batch;
        const float us = median_us([&](int i) {
          p.w = pool.get() + size_t(i % copies) * stride;
          cuda::launch_matmul_gemv(p, nullptr);
        });
        const double gbs = bytes / (us * 1e-6) / 1e9;
        std::printf("[bench] %-5s %5ldx%-6ld %5ld %10.2f %9.2f %8.0f %5.0f%%\n", ggml_type_name(type),
                    long(sh[0]), long(sh[1]), long(batch), bytes / 1e6, us, gbs, 100.0 * gbs / copy_gbs);
      }
    }
  }

  // Gemma 3 270M decode shapes (n_embd 640 is not a multiple of 256: legacy types there).
  struct GemmaShape { GgmlType type; int64_t rows, cols; };
  for (const GemmaShape& g : {GemmaShape{GgmlType::Q5_0, 2048, 640}, GemmaShape{GgmlType::Q8_0, 2048, 640},
                              GemmaShape{GgmlType::Q4_K, 640, 2048}, GemmaShape{GgmlType::Q6_K, 640, 2048},
                              GemmaShape{GgmlType::Q8_0, 1024, 640}, GemmaShape{GgmlType::Q8_0, 262144, 640},
                              GemmaShape{GgmlType::Q5_0, 262144, 640}}) {
    const size_t bytes = ggml_row_bytes(g.type, g.cols) * size_t(g.rows);
    const size_t stride = (bytes + 255) / 256 * 256;
    const int copies = int(std::max<size_t>(1, std::min<size_t>(16, kPoolBytes / stride)));
    cuda::MatmulParams p;
    p.type = g.type;
    p.rows = g.rows;
    p.cols = g.cols;
    p.x = x.get();
    p.y = y.get();
    p.n_tokens = 1;
    const float us = median_us([&](int i) {
      p.w = pool.get() + size_t(i % copies) * stride;
      cuda::launch_matmul_gemv(p, nullptr);
    });
    const double gbs = bytes / (us * 1e-6) / 1e9;
    std::printf("[bench] %-5s %5ldx%-6ld %5d %10.2f %9.2f %8.0f %5.0f%%  (gemma3-270m)\n",
                ggml_type_name(g.type), long(g.rows), long(g.cols), 1, bytes / 1e6, us, gbs,
                100.0 * gbs / copy_gbs);
  }

  // Prefill GEMM at 512 tokens, 4096 x 4096.
  DeviceBuffer<float> xp(random_floats(size_t(512) * 4096, 2u));
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<uint8_t> lt_ws(size_t(32) << 20), scratch(size_t(512) * 4096 * 2);
  cuda::GemmContext ctx;
  ctx.lt = lt;
  ctx.workspace = lt_ws.get();
  ctx.workspace_bytes = lt_ws.size();
  ctx.scratch = scratch.get();
  ctx.scratch_bytes = scratch.size();
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16}) {
    for (bool use_lt : {false, true}) {
      if (use_lt && type != GgmlType::F16) continue;
      cuda::MatmulParams p;
      p.type = type;
      p.rows = 4096;
      p.cols = 4096;
      p.w = pool.get();
      p.x = xp.get();
      p.y = y.get();
      p.n_tokens = 512;
      p.gemm = use_lt ? &ctx : nullptr;
      const float us = median_us([&](int) { cuda::launch_matmul_gemm(p, nullptr); }, 3, 7, 5);
      std::printf("[bench] gemm %-5s 4096x4096 x 512 tokens %s: %.1f us, %.1f TFLOP/s\n",
                  ggml_type_name(type), use_lt ? "cuBLASLt" : "tiled wmma", us,
                  2.0 * 512 * 4096 * 4096 / (us * 1e-6) / 1e12);
    }
  }
  cublasLtDestroy(lt);

  // Decode attention: 8 sequences x 4096 context, 32 q heads / 8 kv heads, head_dim 128 (Llama-3-8B),
  // and 1 sequence x 8192 context, 4 / 1 heads, head_dim 256 (Gemma 3 270M).
  struct AttnBench { int n_seqs, ctx, n_head, n_kv, D; };
  for (const AttnBench& ab : {AttnBench{8, 4096, 32, 8, 128}, AttnBench{1, 8192, 4, 1, 256}}) {
    const int bs = 16, mbps = ab.ctx / bs;
    const size_t cache_bytes = size_t(ab.n_seqs) * mbps * ab.n_kv * bs * ab.D * 2;
    std::vector<int32_t> table(size_t(ab.n_seqs) * mbps), start(ab.n_seqs + 1), len(ab.n_seqs, ab.ctx),
        pos(ab.n_seqs, ab.ctx - 1);
    for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
    for (int s = 0; s <= ab.n_seqs; ++s) start[s] = s;
    DeviceBuffer<int32_t> d_table(table), d_start(start), d_len(len), d_pos(pos);
    DeviceBuffer<float> q(random_floats(size_t(ab.n_seqs) * ab.n_head * ab.D, 3u)),
        out(size_t(ab.n_seqs) * ab.n_head * ab.D);
    cuda::AttentionParams p;
    p.q = q.get();
    p.out = out.get();
    p.q_pos = d_pos.get();
    p.q_seq_start = d_start.get();
    p.kv_len = d_len.get();
    p.block_table = d_table.get();
    p.max_blocks_per_seq = mbps;
    p.k_cache = pool.get();
    p.v_cache = pool.get() + cache_bytes;
    p.n_seqs = ab.n_seqs;
    p.n_tokens = ab.n_seqs;
    p.n_head = ab.n_head;
    p.n_head_kv = ab.n_kv;
    p.head_dim = ab.D;
    p.max_q_len = 1;
    p.max_kv_len = ab.ctx;
    DeviceBuffer<uint8_t> ws(std::max<size_t>(1, cuda::attention_workspace_bytes(p)));
    p.workspace = ws.get();
    p.workspace_bytes = ws.size();
    // fp16 K/V from random bytes can hold NaN/inf; the timing is what matters here.
    const float us = median_us([&](int) { cuda::launch_attention(p, nullptr); });
    std::printf("[bench] attention decode seqs=%d ctx=%d heads=%d/%d D=%d: %.1f us, KV %.1f MB, %.0f GB/s\n",
                ab.n_seqs, ab.ctx, ab.n_head, ab.n_kv, ab.D, us, 2.0 * cache_bytes / 1e6,
                2.0 * cache_bytes / (us * 1e-6) / 1e9);
  }
}

}  // namespace
}  // namespace fathom::test

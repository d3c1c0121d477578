// The engine's shared workspace bytes (src/cuda/prefill_plan.cpp): the decode matmul's (mma_q8)
// split-K partials live in the bytes of the prefill's dequantized-weight scratch. A tiny Q4_K
// model with FATHOM_DEQUANT_MIN_ELEMENTS=0 (every matrix prefills through dequant + cuBLASLt)
// interleaves prefills in 32-token chunks (the scratch) and 8-token tails (mma_q8) with graphed
// decode batches of 3 (mma_q8) over three sequences; the results must equal the same calls with
// FATHOM_MMQ_SHARE=0 (separate bytes, the plan before), which differs only in addresses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "fathom/cuda_engine.h"
#include "test_engine_util.h"

namespace fathom {
namespace {

using test::ScopedEnv;

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // every prefill's last row and every decode step's rows
  size_t workspace = 0;
};

Outcome run_interleaved(const Model& model, bool share) {
  ScopedEnv dq("FATHOM_DEQUANT_MIN_ELEMENTS", "0");
  ScopedEnv sh("FATHOM_MMQ_SHARE", share ? "1" : "0");
  CudaEngineOptions o;
  o.n_ctx = 160;
  o.max_batch = 3;
  o.ubatch = 32;
  CudaEngine gpu(model, o);
  const int64_t V = model.config.n_vocab;
  Outcome r;
  r.workspace = gpu.memory().workspace;
  const int32_t seqs[3] = {0, gpu.add_sequence(), gpu.add_sequence()};
  std::vector<float> row(size_t(V) * 3);
  int32_t last[3] = {0, 0, 0};
  auto prefill = [&](int s, int64_t n, int salt) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 37 + 11 + salt * 101) % (V - 300) + 259);
    last[s] = gpu.eval_seq(seqs[s], p.data(), n, row.data());
    r.tokens.push_back(last[s]);
    r.logits.insert(r.logits.end(), row.begin(), row.begin() + V);
  };
  auto decode = [&](int steps) {
    for (int i = 0; i < steps; ++i) {
      int32_t out[3];
      gpu.decode_batch(seqs, last, 3, out, row.data());
      for (int s = 0; s < 3; ++s) last[s] = out[s], r.tokens.push_back(out[s]);
      r.logits.insert(r.logits.end(), row.begin(), row.end());
    }
  };
  prefill(0, 40, 1);  // 32 + 8 tokens: the dequant scratch, then mma_q8
  prefill(1, 45, 2);  // 32 + 13
  prefill(2, 33, 3);  // 32 + 1 (the one-token GEMV)
  decode(6);          // graphs: mma_q8 at 3 tokens
  prefill(0, 36, 4);  // prefill after graph replays, into the same bytes
  decode(6);
  return r;
}

TEST(EngineWorkspace, MmaPartialsShareTheDequantScratch) {
  SKIP_WITHOUT_GPU();
  const Model& model = test::cached_test_model("engine_ws", "tiny-llama", "Q4_K", 7);
  const Outcome shared = run_interleaved(model, true);
  const Outcome separate = run_interleaved(model, false);
  EXPECT_LT(shared.workspace, separate.workspace);
  EXPECT_EQ(shared.tokens, separate.tokens);
  ASSERT_EQ(shared.logits.size(), separate.logits.size());
  double worst = 0, scale = 0;
  size_t differ = 0;
  for (size_t i = 0; i < shared.logits.size(); ++i) {
    ASSERT_TRUE(std::isfinite(shared.logits[i])) << "logit " << i;
    worst = std::max(worst, double(std::fabs(shared.logits[i] - separate.logits[i])));
    scale = std::max(scale, double(std::fabs(separate.logits[i])));
    differ += shared.logits[i] != separate.logits[i];
  }
  // Same kernels, same launch plans: bit-identical is expected; the bound allows a cuBLASLt
  // algorithm that picked differently for another address.
  std::printf("shared vs separate workspace (%zu vs %zu bytes): %zu of %zu logits differ, worst %.3g of %.3g\n",
              shared.workspace, separate.workspace, differ, shared.logits.size(), worst, scale);
  EXPECT_LE(worst, 1e-4 * scale);
}

}  // namespace
}  // namespace fathom

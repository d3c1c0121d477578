// The CUDA engine's workspace plan (src/cuda/prefill_plan.h) on full-size synthetic models: host
// arithmetic, no device. Each plan is printed term by term (ctest --output-on-failure, or run
// fathom_tests --gtest_filter='PrefillPlan.*' to read them).
#include <gtest/gtest.h>

#ifdef FATHOM_HAVE_CUDA
#include <cstdio>

#include "cuda/prefill_plan.h"
#include "fathom/synthetic.h"

namespace {

using fathom::PrefillPlanner;

// The decode attention's split-K partials depend on the device's SM count and occupancy; on the
// H200 at n_ctx 4096 they are ~0.5 MB (1 sequence) to ~1 MB (8): this bound stands in for them.
constexpr size_t kAttnWs = size_t(1) << 20;

struct Plan {
  std::unique_ptr<fathom::Model> model;
  PrefillPlanner p;
  size_t workspace = 0, dequant = 0;
};

// What CudaEngine's load() plans for `fathom bench --synthetic shape --type type -p n_ctx -b batch`.
Plan plan_for(const char* shape, const char* type, int max_batch, int64_t n_ctx, bool share = true,
              int64_t ubatch = 0) {
  Plan r;
  r.model = fathom::make_synthetic_model(shape, type);
  fathom::CudaEngineOptions o;
  o.max_batch = max_batch;
  o.n_ctx = n_ctx;
  o.ubatch = ubatch;
  r.p = PrefillPlanner(r.model->config, o);
  r.p.measure(*r.model, r.model->file->file_size() - r.model->file->data_offset());
  r.p.share_mmq_partials = share;
  r.p.n_ctx = n_ctx;
  r.p.attn_ws_bytes = kAttnWs;
  r.p.choose_prefill_chunk(*r.model);
  r.p.rows = std::max<int64_t>(r.p.ubatch, max_batch);
  std::vector<PrefillPlanner::Term> terms;
  r.workspace = r.p.plan_workspace(r.p.rows, r.p.need_lt, &r.dequant, 0, &terms);
  std::printf("%s %s batch %d%s: ubatch %lld, FFN slice %lld of %lld, weights %.1f MB, workspace %.1f MB "
              "(%.2f%% of weights)\n%s",
              shape, type, max_batch, share ? "" : " (partials not shared)", (long long)r.p.ubatch,
              (long long)r.p.ffn_slice, (long long)r.model->config.n_ff, r.p.weight_bytes / 1e6,
              r.workspace / 1e6, 100.0 * double(r.workspace) / double(r.p.weight_bytes),
              fathom::describe_workspace(terms, r.p.work_budget).c_str());
  return r;
}

TEST(PrefillPlan, Llama3_8bQ4KMTakes2048TokenChunksWithinBudget) {
  // Issue 8: Q4_K_M pp4096 was 15.7% under F16 with 1024-token chunks (each chunk dequantizes every
  // weight again); with the mma_q8 partials in the dequant scratch 2048 tokens fit.
  for (int batch : {1, 8}) {
    const Plan now = plan_for("llama3-8b", "Q4_K_M", batch, 4096);
    EXPECT_EQ(now.p.ubatch, 2048);
    EXPECT_LE(now.workspace, now.p.work_budget);
    EXPECT_LT(double(now.workspace), 0.05 * double(now.p.weight_bytes));
    // The scratch holds every layer matrix whole (Wq / Wo: 4096 x 4096 bf16) and the partials.
    EXPECT_GE(now.dequant, size_t(4096) * 4096 * 2);
    const Plan before = plan_for("llama3-8b", "Q4_K_M", batch, 4096, false);
    EXPECT_EQ(before.p.ubatch, 1024);
  }
}

TEST(PrefillPlan, ForcedChunksShowTheTerms) {
  // The two chunk sizes of issue 8, each with the widest FFN slice that fits.
  for (int64_t ub : {1024, 2048}) {
    const Plan now = plan_for("llama3-8b", "Q4_K_M", 1, 4096, true, ub);
    EXPECT_LE(now.workspace, now.p.work_budget);
    const Plan before = plan_for("llama3-8b", "Q4_K_M", 1, 4096, false, ub);
    EXPECT_GE(now.p.ffn_slice, before.p.ffn_slice);
  }
}

TEST(PrefillPlan, OtherModelsKeepTheirChunkOrGrow) {
  const char* shapes[] = {"llama3-8b", "llama3.2-1b", "qwen2.5-7b", "qwen3-0.6b", "gemma3-270m"};
  const char* types[] = {"F16", "Q8_0", "Q4_K_M"};
  for (const char* shape : shapes)
    for (const char* type : types)
      for (int batch : {1, 32}) {
        SCOPED_TRACE(std::string(shape) + " " + type + " batch " + std::to_string(batch));
        const Plan now = plan_for(shape, type, batch, 4096);
        const Plan before = plan_for(shape, type, batch, 4096, false);
        EXPECT_GE(now.p.ubatch, before.p.ubatch);
        if (now.p.ubatch == before.p.ubatch) EXPECT_GE(now.p.ffn_slice, before.p.ffn_slice);
        // Within budget -- or, as before, over it at the smallest chunk when nothing fits.
        if (before.workspace <= before.p.work_budget) EXPECT_LE(now.workspace, now.p.work_budget);
        else EXPECT_LE(now.workspace, before.workspace);
      }
}

}  // namespace
#endif  // FATHOM_HAVE_CUDA

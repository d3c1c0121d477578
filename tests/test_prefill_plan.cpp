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
constexpr int64_t kGemvMaxTokensForTest = 16;  // kGemvMaxTokens (ops.cuh): GEMV passes are never sliced

struct Plan {
  std::unique_ptr<fathom::Model> model;
  PrefillPlanner p;
  size_t workspace = 0, dequant = 0;
};

// What CudaEngine's load() plans for `fathom bench --synthetic shape --type type -p n_ctx -b batch`.
Plan plan_for(const char* shape, const char* type, int max_batch, int64_t n_ctx, bool share = true,
              int64_t ubatch = 0, bool per_pass = true) {
  Plan r;
  r.model = fathom::make_synthetic_model(shape, type);
  fathom::CudaEngineOptions o;
  o.max_batch = max_batch;
  o.n_ctx = n_ctx;
  o.ubatch = ubatch;
  r.p = PrefillPlanner(r.model->config, o);
  r.p.measure(*r.model, r.model->file->file_size() - r.model->file->data_offset());
  r.p.share_mmq_partials = share;
  r.p.slices_per_pass = per_pass;
  r.p.n_ctx = n_ctx;
  r.p.attn_ws_bytes = kAttnWs;
  r.p.choose_prefill_chunk(*r.model);
  r.p.rows = std::max<int64_t>(r.p.ubatch, max_batch);
  std::vector<PrefillPlanner::Term> terms;
  r.workspace = r.p.plan_workspace(r.p.rows, r.p.need_lt, &r.dequant, 0, &terms);
  std::printf("%s %s batch %d%s%s: ubatch %lld, FFN slice %lld of %lld (passes of <= %lld rows: %lld at 32 rows, "
              "%lld at %lld; scratch %.1f MiB), weights %.1f MB, workspace %.1f MB (%.2f%% of weights)\n%s",
              shape, type, max_batch, share ? "" : " (partials not shared)",
              per_pass ? "" : " (one slice for every pass)", (long long)r.p.ubatch,
              (long long)r.p.ffn_slice, (long long)r.model->config.n_ff, (long long)r.p.half_rows,
              (long long)r.p.ffn_slice_for(32), (long long)r.p.ffn_slice_for(r.p.half_rows),
              (long long)r.p.half_rows, r.p.half_dequant_bytes / 1048576.0, r.p.weight_bytes / 1e6,
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

TEST(PrefillPlan, Llama3_8bQ4KMShortPassesTakeTwoSlices) {
  // Slices per pass: -p 4096 keeps 2048-row chunks in 4 slices of 3584; a pass of <= 1024 rows (a
  // 512-token prompt) runs 2 slices of 7168, the gate slice (56 MiB of bf16) dequantized into the
  // scratch (32 MiB) + the q / a buffer (32 MiB) after it.
  const Plan now = plan_for("llama3-8b", "Q4_K_M", 1, 4096);
  const PrefillPlanner& p = now.p;
  EXPECT_EQ(p.ubatch, 2048);
  EXPECT_EQ(p.ffn_slice, 3584);
  EXPECT_EQ(p.half_rows, 1024);
  EXPECT_EQ(p.ffn_slice_for(2048), 3584);  // pp4096: two chunks of 2048
  EXPECT_EQ(p.ffn_slice_for(1025), 3584);
  EXPECT_EQ(p.ffn_slice_for(1024), 7168);
  EXPECT_EQ(p.ffn_slice_for(512), 7168);   // pp512: one chunk
  EXPECT_EQ(p.ffn_slice_for(17), 7168);
  EXPECT_EQ(p.ffn_slice_for(16), 14336);   // the GEMV / mma_q8 (<= 16 tokens): never sliced
  EXPECT_FALSE(p.half_pass(1025));
  EXPECT_TRUE(p.half_pass(1024));
  EXPECT_TRUE(p.half_pass(17));
  EXPECT_FALSE(p.half_pass(16));  // GEMV / mma_q8 decode passes keep the full layout
  // The pass's scratch holds the 7168 x 4096 gate/up slice and the 4096 x 7168 down slice whole,
  // not the whole 14336 x 4096 gate.
  EXPECT_GE(p.half_dequant_bytes, size_t(7168) * 4096 * 2);
  EXPECT_LT(p.half_dequant_bytes, size_t(14336) * 4096 * 2);
  // ... and is the scratch as allocated (32 MiB) plus the q / a buffer (2048 x 4096 x 4 = 32 MiB).
  EXPECT_EQ(p.half_dequant_bytes, p.dequant_region_bytes(p.rows, now.dequant) + p.qa_bytes(p.rows));
  EXPECT_EQ(p.qa_bytes(p.rows), size_t(2048) * 4096 * 4);
  EXPECT_EQ(p.half_dequant_bytes, size_t(64) << 20);
  // Those passes' buffers: 1024 x 7168 in the gate/up buffers (2048 x 3584), the down GEMM's
  // 16-bit input 1024 x 7168 in the x16 scratch (2048 x 4096), q in h's upper half.
  EXPECT_LE(p.half_rows * 7168, p.rows * p.ffn_slice);
  EXPECT_LE(p.half_rows * 7168, p.rows * 4096);
  EXPECT_LE(2 * p.half_rows, p.rows);
  // No byte added: the same workspace as one slice for every pass, under the budget (< 5%).
  const Plan one = plan_for("llama3-8b", "Q4_K_M", 1, 4096, true, 0, false);
  EXPECT_EQ(one.p.half_rows, 0);
  EXPECT_EQ(one.p.ffn_slice_for(512), 3584);  // session 15: 4 slices at every size
  EXPECT_EQ(one.p.ubatch, p.ubatch);
  EXPECT_EQ(one.p.ffn_slice, p.ffn_slice);
  EXPECT_EQ(now.workspace, one.workspace);
  EXPECT_LE(now.workspace, p.work_budget);
  EXPECT_LT(double(now.workspace), 0.05 * double(p.weight_bytes));
}

TEST(PrefillPlan, Llama3_8bQ4KMBatch32DecodeTakesTwoSlices) {
  // -b 32: 2048-row chunks in 5 slices of 3072 (the 32 logits rows, 16 MiB, take the room of the
  // fourth slice). The 32-row decode step runs 2 slices of 7168 (session 15: 5); the gate/up
  // buffers (2048 x 3072) hold 7168 columns of up to 877 rows, 4864 of up to 1024.
  const Plan now = plan_for("llama3-8b", "Q4_K_M", 32, 4096);
  const PrefillPlanner& p = now.p;
  EXPECT_EQ(p.ubatch, 2048);
  EXPECT_EQ(p.ffn_slice, 3072);
  EXPECT_EQ(p.half_rows, 1024);
  EXPECT_EQ(p.ffn_slice_for(32), 7168);
  EXPECT_EQ(p.ffn_slice_for(512), 7168);
  EXPECT_EQ(p.ffn_slice_for(877), 7168);
  EXPECT_EQ(p.ffn_slice_for(878), 4864);
  EXPECT_EQ(p.ffn_slice_for(1024), 4864);
  EXPECT_EQ(p.ffn_slice_for(2048), 3072);
  for (int64_t T = kGemvMaxTokensForTest + 1; T <= p.half_rows; ++T) {
    const int64_t S = p.ffn_slice_for(T);
    ASSERT_LE(T * S, p.rows * p.ffn_slice) << T;         // gate/up buffers
    ASSERT_LE(T * S, p.rows * 4096) << T;                // x16 scratch: rows x max(n_embd, slice, qd)
    size_t cap = 0;
    int64_t cols = 0;
    p.dequant_need(S, &cap, &cols, true);
    ASSERT_LE(cap, p.half_dequant_bytes) << T;           // every matrix whole in the pass's scratch
  }
  const Plan one = plan_for("llama3-8b", "Q4_K_M", 32, 4096, true, 0, false);
  EXPECT_EQ(one.p.ffn_slice_for(32), 3072);
  EXPECT_EQ(now.workspace, one.workspace);
  EXPECT_LE(now.workspace, p.work_budget);
}

TEST(PrefillPlan, SlicesPerPassLeaveOtherPlansAlone) {
  // F16 (no dequant scratch) and llama3.2-1b (FFN whole) plan exactly as before; every plan's
  // chunk, full-pass slice and bytes are those of one slice for every pass; where a half pass
  // takes a wider slice, its matrices fit its scratch and its rows the buffers.
  const char* shapes[] = {"llama3-8b", "llama3.2-1b", "qwen2.5-7b", "qwen3-0.6b", "gemma3-270m"};
  const char* types[] = {"F16", "Q8_0", "Q4_K_M"};
  for (const char* shape : shapes)
    for (const char* type : types)
      for (int batch : {1, 32}) {
        SCOPED_TRACE(std::string(shape) + " " + type + " batch " + std::to_string(batch));
        const Plan now = plan_for(shape, type, batch, 4096);
        const Plan one = plan_for(shape, type, batch, 4096, true, 0, false);
        EXPECT_EQ(now.p.ubatch, one.p.ubatch);
        EXPECT_EQ(now.p.ffn_slice, one.p.ffn_slice);
        EXPECT_EQ(now.workspace, one.workspace);
        EXPECT_EQ(now.dequant, one.dequant);
        const bool fixed = std::string(type) == "F16" || std::string(shape) == "llama3.2-1b";
        if (fixed) EXPECT_EQ(now.p.half_rows, 0);
        const int64_t F = now.model->config.n_ff;
        for (int64_t T = 1; T <= now.p.rows; T += (T < 64 ? 1 : 61)) {
          const int64_t S = now.p.ffn_slice_for(T), S1 = one.p.ffn_slice_for(T);
          if (!now.p.half_pass(T)) {
            ASSERT_EQ(S, S1) << T;
            continue;
          }
          ASSERT_GE(S, S1) << T;  // never narrower
          if (S == S1) continue;
          ASSERT_LE(T * S, now.p.rows * now.p.ffn_slice) << T;
          size_t cap = 0;
          int64_t cols = 0;
          now.p.dequant_need(S, &cap, &cols, true);
          ASSERT_LE(cap, now.p.half_dequant_bytes) << T;
          ASSERT_TRUE(S == F || S % 256 == 0) << T;
        }
      }
}

TEST(PrefillPlan, GpuTestPlanTakesHalfPasses) {
  // The plan of tests/gpu/test_slices_per_pass.cpp (llama3-8b Q4_K_M, 20 sequences, n_ctx 1280):
  // its 1100-token prompt is a full pass, its 600- and 20-row passes half passes with wider slices.
  const Plan now = plan_for("llama3-8b", "Q4_K_M", 20, 1280);
  const PrefillPlanner& p = now.p;
  EXPECT_EQ(p.ubatch, 2048);
  EXPECT_EQ(p.half_rows, 1024);
  EXPECT_FALSE(p.half_pass(1100));
  EXPECT_GT(p.ffn_slice_for(600), p.ffn_slice);
  EXPECT_GT(p.ffn_slice_for(20), p.ffn_slice);
  EXPECT_LE(now.workspace, p.work_budget);
}

}  // namespace
#endif  // FATHOM_HAVE_CUDA

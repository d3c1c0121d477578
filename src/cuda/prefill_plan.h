// The CUDA engine's workspace plan: the prefill chunk (ubatch), the FFN slice width and the bytes of
// every workspace buffer, as host arithmetic. CudaEngine::Impl derives from PrefillPlanner; the CPU
// test (tests/test_prefill_plan.cpp) runs the same code on synthetic full-size models without a
// device. The one device-dependent input, the decode attention's split-K partials, is set by the
// caller (attn_ws_bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fathom/cuda_engine.h"
#include "fathom/model.h"

namespace fathom {

// Offsets into the step-input header, in int32 elements.
struct InLayout {
  int64_t rows = 0, batch = 0;
  int64_t tokens() const { return 0; }
  int64_t pos() const { return rows; }
  int64_t slots() const { return 2 * rows; }
  int64_t seq_start() const { return 3 * rows; }
  int64_t kv_len() const { return 3 * rows + batch + 1; }
  int64_t size() const { return 3 * rows + 2 * batch + 1; }
};

// The largest prefill chunk the engine picks by itself. cuBLASLt's bf16 GEMMs at the 8B shapes
// gain little past M = 2048 (tests/gpu/test_prefill_bench.cu), and the activations grow with it.
constexpr int64_t kMaxUbatch = 2048;
// Prefill chunks of at least this many tokens may split the FFN intermediate into up to
// kMaxFfnSlices column slices to fit the workspace budget (smaller chunks keep it whole: there the
// extra passes over x and the extra launches per slice cost more than a larger chunk saves).
constexpr int64_t kMinSlicedUbatch = 1024;
constexpr int64_t kMaxFfnSlices = 6;
constexpr int64_t kFfnSliceAlign = 256;  // slice starts stay on K-quant super-block boundaries

constexpr size_t kLtWorkspace = size_t(4) << 20;  // cuBLASLt's recommendation for Hopper is 32 MiB
                                                   // for big GEMMs; 4 MiB suffices for our shapes

struct PrefillPlanner {
  // One named buffer of plan_workspace (bytes before the arena's 256-byte rounding).
  struct Term {
    std::string name;
    size_t bytes;
  };
  // Quantized matrices that take the dequantized-chunk GEMM: (rows, cols) and whether an FFN
  // slice shrinks them (1: gate/up rows, 2: down cols; 3: the LM head, a GEMM only for decode
  // batches over kGemvMaxTokens). dequant_need() -> the scratch's bounds.
  struct DequantMat {
    int64_t rows, cols;
    int ffn;
  };

  ModelConfig cfg;
  CudaEngineOptions opt;
  int64_t n_ctx = 0, ubatch = 0, rows = 0;
  int max_batch = 1;
  int64_t head_dim = 0;
  size_t weight_bytes = 0;    // the weight arena: the file's data section + device copies of vectors
  size_t work_budget = 0;     // the workspace's share of memory: 4.9% of the weight bytes
  // Prefill FFN: the intermediate (T, n_ff) is computed in column slices of ffn_slice columns when
  // T * n_ff exceeds rows * ffn_slice (the gate/up buffers); n_ff = never sliced.
  int64_t ffn_slice = 0;
  bool need_lt = false;       // some matrix takes cuBLASLt (F16/BF16, or dequantized chunks)
  int64_t dequant_min = 0;    // quantized matrices of fewer elements keep the tiled kernel
  // Whether the FFN of a T-token GEMM pass runs in slices: when the whole does not fit the gate/up
  // buffers, and also when it does but its matrices are dequantized, because the dequant scratch
  // was sized for a slice (whole gate/up/down would go through it in narrow row chunks: H200,
  // Q8_0 pp512 at 16.8k tok/s unsliced vs Q4_K_M 17.2k sliced). Never for the GEMV (<= 16 tokens).
  bool ffn_dequant = false;  // some FFN matrix takes the dequantized-chunk GEMM
  std::vector<DequantMat> dequant_mats;
  size_t attn_ws_bytes = 0;  // decode attention split-K partials at n_ctx (device-dependent; caller sets)
  // The mma_q8 split-K partials share the dequant scratch's bytes (plan_workspace). false: their
  // own bytes, the plan before they shared (tests compare the two).
  bool share_mmq_partials = true;
  // Slices per pass (choose_half_pass_slices): a pass of at most half_rows rows (a short prompt's
  // chunk, a decode batch) keeps q / a in the upper half of the h / att buffer, which such a pass
  // leaves free, and its dequant scratch extends over the q / a buffer (the arena places it right
  // after the scratch): half_dequant_bytes from the scratch's start to the buffer's end. Its FFN
  // then runs in the widest of half_slices (each wider than ffn_slice, widest first; n_ff = whole)
  // whose T-row intermediate fits the gate/up buffers and the 16-bit x scratch (ffn_slice_for).
  // half_rows 0: every pass takes ffn_slice (FATHOM_SLICES_PER_PASS=0: the session-15 plan,
  // FATHOM_FFN_SLICE forcing a width, or no wider slice fits). The workspace bytes do not change.
  bool slices_per_pass = true;
  int64_t half_rows = 0;
  std::vector<int64_t> half_slices;
  size_t half_dequant_bytes = 0;

  PrefillPlanner() = default;
  PrefillPlanner(const ModelConfig& c, const CudaEngineOptions& o) : cfg(c), opt(o) {}

  bool ffn_sliced(int64_t T) const;
  // Whether a pass of T rows takes the half-pass layout (q / a in h's upper half, wider scratch):
  // GEMM passes (> kGemvMaxTokens rows) of at most half_rows rows. GEMV / mma_q8 passes (decode
  // of 1..16 sequences) keep the full layout: they neither slice the FFN nor dequantize.
  bool half_pass(int64_t T) const;
  // The FFN column slice a pass of T rows runs (n_ff: whole, unsliced).
  int64_t ffn_slice_for(int64_t T) const;
  // Bytes of the q / a buffer and of the dequant scratch as allocated (alloc_workspace: with the
  // partials shared, max(scratch, partials) after the mma_q8 counters), for `rows_` rows.
  size_t qa_bytes(int64_t rows_) const;
  size_t dequant_region_bytes(int64_t rows_, size_t dq) const;
  // head_dim, max_batch, weight_bytes, work_budget, dequant_min, need_lt, dequant_mats and
  // ffn_dequant from the model and opt. data_bytes: the file's data section.
  void measure(const Model& model, size_t data_bytes);
  // Workspace bytes for `rows_` activation rows; *dequant_bytes (optional) gets the share of
  // the bf16 weight-chunk scratch in it (what work_budget leaves, see the definition).
  // slice: the FFN slice width to plan for (0: ffn_slice). terms: each buffer, for -v and tests.
  size_t plan_workspace(int64_t rows_, bool lt, size_t* dequant_bytes = nullptr, int64_t slice = 0,
                        std::vector<Term>* terms = nullptr) const;
  // bf16 bytes of the largest quantized matrix the GEMM sees with FFN slices of `slice` columns,
  // and the widest of their column counts (layers_only: without the LM head).
  void dequant_need(int64_t slice, size_t* cap, int64_t* cols, bool layers_only = false) const;
  // Sets ubatch and ffn_slice, then half_rows, half_slices and half_dequant_bytes (needs
  // measure(), n_ctx and attn_ws_bytes first).
  void choose_prefill_chunk(const Model& model);

 private:
  bool ffn_sliceable = false;  // choose_prefill_chunk: the FFN weights can be column-sliced
  bool slice_ok(int64_t rows_, int64_t S) const;
  void choose_half_pass_slices(const std::vector<int64_t>& slices);
};

// The terms one per line ("  name  bytes"), with the total and the budget.
std::string describe_workspace(const std::vector<PrefillPlanner::Term>& terms, size_t budget);

}  // namespace fathom

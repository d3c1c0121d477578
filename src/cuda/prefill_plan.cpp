// The CUDA engine's workspace plan (prefill_plan.h): host arithmetic only, so the CPU tests run it.
#include "cuda/prefill_plan.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda/arena.h"
#include "cuda/matmul_mma_q8.cuh"
#include "cuda/ops.cuh"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/quant.h"

namespace fathom {

using namespace fathom::cuda;

namespace {
// Quantized matrices with at least this many elements prefill through dequantized bf16 chunks
// and cuBLASLt; smaller ones through the tiled kernel (see GemmContext::dequant_min_elements).
// With the per-shape plan cache a chunk costs a hash lookup (no heuristic query), so models of
// kSmallModelBytes or more send every quantized matrix that way. Smaller models keep the old
// 1 << 22 threshold: the path's workspace (cuBLASLt workspace, x16 scratch, dequant floor) comes
// out of their 4.5%-of-weights budget and halves their prefill chunk. Measured on the H200,
// pp512 tok/s, Q4_K_M (bench/device_q8_run.sh, threshold 0 vs 1 << 22): gemma3-270m (247 MB)
// 17.0k vs 30.0k; llama3.2-1b (800 MB) 25.4k vs 17.0k; qwen2.5-7b 17.5k vs 14.0k; llama3-8b
// 16.1k vs 16.1k. FATHOM_DEQUANT_MIN_ELEMENTS overrides both for A/B runs.
constexpr int64_t kDequantMinElements = 0;
constexpr int64_t kDequantMinElementsSmall = int64_t(1) << 22;
constexpr size_t kSmallModelBytes = size_t(512) << 20;
}  // namespace

bool PrefillPlanner::ffn_sliced(int64_t T) const {
  return ffn_slice < cfg.n_ff && T > kGemvMaxTokens && (T * cfg.n_ff > rows * ffn_slice || ffn_dequant);
}

bool PrefillPlanner::half_pass(int64_t T) const {
  return half_rows > 0 && T > kGemvMaxTokens && T <= half_rows;
}

int64_t PrefillPlanner::ffn_slice_for(int64_t T) const {
  if (!half_pass(T)) return ffn_sliced(T) ? ffn_slice : cfg.n_ff;
  // The widest half-pass slice whose (T, S) intermediate fits the gate/up buffers (rows x
  // ffn_slice each) and whose down GEMM's 16-bit input fits the x16 scratch; then the rule of
  // ffn_sliced with that width (S = n_ff: whole).
  const int64_t qd = cfg.n_head * head_dim;
  const int64_t x16_cols = std::max({cfg.n_embd, ffn_slice, qd});
  for (int64_t S : half_slices)
    if (T * S <= rows * ffn_slice && T * std::max({cfg.n_embd, S, qd}) <= rows * x16_cols)
      return S < cfg.n_ff && (T * cfg.n_ff > rows * ffn_slice || ffn_dequant) ? S : cfg.n_ff;
  return ffn_sliced(T) ? ffn_slice : cfg.n_ff;
}

size_t PrefillPlanner::qa_bytes(int64_t r) const {
  return size_t(r) * size_t(std::max(cfg.n_embd, cfg.n_head * head_dim)) * 4;
}

size_t PrefillPlanner::dequant_region_bytes(int64_t r, size_t dq) const {
  if (!(share_mmq_partials && dq > 0)) return dq;
  const int64_t qd = cfg.n_head * head_dim, kvd = cfg.n_head_kv * head_dim;
  const size_t mmq = mma_q8_workspace_bytes(std::min<int64_t>(r, kMmaQ8MaxTokens),
                                            std::max({2 * cfg.n_ff, qd + 2 * kvd, cfg.n_embd}));
  return std::max(dq, mmq - kMmaQ8WorkspaceCounterBytes);
}

void PrefillPlanner::measure(const Model& model, size_t data_bytes) {
  head_dim = cfg.head_dim_k;
  max_batch = opt.max_batch;
  size_t extra = 0;
  auto count_vec = [&](const WeightRef& r) {
    if (r && r.type() != GgmlType::F32) extra += align_up(size_t(r.info->n_elements()) * 4, DeviceArena::kAlign);
  };
  count_vec(model.weights.output_norm);
  for (const LayerWeights& l : model.weights.layers)
    for (const WeightRef* r : {&l.attn_norm, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm,
                               &l.post_attn_norm, &l.ffn_norm, &l.post_ffn_norm})
      count_vec(*r);
  extra += align_up(cfg.rope_freq_factors.size() * 4, DeviceArena::kAlign);
  weight_bytes = align_up(data_bytes, DeviceArena::kAlign) + extra;

  // cuBLASLt serves prefill of every non-F32 matrix (F32 keeps fp32 GEMV slices, see forward):
  // F16/BF16 directly, quantized types through a bf16 chunk of dequantized rows.
  // Quantized matrices under dequant_min (kDequantMinElements, or FATHOM_DEQUANT_MIN_ELEMENTS for
  // A/B runs) keep the tiled kernel (GemmContext), so they need neither cuBLASLt nor dequant
  // scratch: a small model keeps its whole workspace budget for a long prefill chunk
  // (gemma3-270m Q4_K_M pp512 on the H200: 29.9k tok/s with ubatch 512-class chunks, 7.8k when
  // the scratch floor shrank the chunk to 64).
  dequant_min = weight_bytes < kSmallModelBytes ? kDequantMinElementsSmall : kDequantMinElements;
  if (const char* e = std::getenv("FATHOM_DEQUANT_MIN_ELEMENTS"); e && *e) {
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    FATHOM_CHECK(end && *end == '\0' && v >= 0, "FATHOM_DEQUANT_MIN_ELEMENTS='", e,
                 "' is not a non-negative integer (elements of a weight matrix)");
    dequant_min = int64_t(v);
  }
  need_lt = false;
  dequant_mats.clear();
  auto count_quant = [&](const WeightRef& r, int ffn) {
    if (!r || r.type() == GgmlType::F32 || r.type() == GgmlType::F16 || r.type() == GgmlType::BF16)
      return;
    if (r.rows() * r.cols() < dequant_min) return;
    need_lt = true;
    dequant_mats.push_back(DequantMat{r.rows(), r.cols(), ffn});
  };
  for (const LayerWeights& l : model.weights.layers) {
    for (const WeightRef* r : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down})
      if (*r && (r->type() == GgmlType::F16 || r->type() == GgmlType::BF16)) need_lt = true;
    for (const WeightRef* r : {&l.wq, &l.wk, &l.wv, &l.wo}) count_quant(*r, 0);
    count_quant(l.ffn_gate, 1);
    count_quant(l.ffn_up, 1);
    count_quant(l.ffn_down, 2);
  }
  // The LM head runs on up to max_batch rows: a GEMM only above kGemvMaxTokens.
  if (max_batch > kGemvMaxTokens)
    count_quant(model.weights.output ? model.weights.output : model.weights.tok_embd, 3);
  ffn_dequant = std::any_of(dequant_mats.begin(), dequant_mats.end(),
                            [](const DequantMat& m) { return m.ffn == 1 || m.ffn == 2; });
  // FATHOM_MMQ_SHARE=0: the mma_q8 partials in bytes of their own (A/B runs of the old plan).
  if (const char* e = std::getenv("FATHOM_MMQ_SHARE"); e && std::strcmp(e, "0") == 0) share_mmq_partials = false;
  // FATHOM_SLICES_PER_PASS=0: every pass takes the full passes' FFN slice (choose_half_pass_slice;
  // the session-15 plan, A/B runs).
  if (const char* e = std::getenv("FATHOM_SLICES_PER_PASS"); e && std::strcmp(e, "0") == 0)
    slices_per_pass = false;
  // Prefill chunk and FFN slice under 4.9% of the weights (the budget is 5%).
  work_budget = size_t(0.049 * double(weight_bytes));
}

void PrefillPlanner::dequant_need(int64_t slice, size_t* cap, int64_t* cols, bool layers_only) const {
  *cap = 0;
  *cols = 0;
  for (const DequantMat& m : dequant_mats) {
    if (layers_only && m.ffn == 3) continue;
    const int64_t r = m.ffn == 1 ? std::min(m.rows, slice) : m.rows;
    const int64_t k = m.ffn == 2 ? std::min(m.cols, slice) : m.cols;
    *cap = std::max(*cap, size_t(r) * size_t(k) * 2);
    *cols = std::max(*cols, k);
  }
}

size_t PrefillPlanner::plan_workspace(int64_t r, bool lt, size_t* dequant_bytes, int64_t slice,
                                      std::vector<Term>* terms) const {
  const ModelConfig& c = cfg;
  const int64_t qd = c.n_head * head_dim, kvd = c.n_head_kv * head_dim;
  const int64_t S = slice > 0 ? slice : (ffn_slice > 0 ? ffn_slice : c.n_ff);
  ArenaPlan p;
  auto add = [&](const char* name, int64_t n) {
    if (terms) terms->push_back(Term{name, size_t(n)});
    p.add(size_t(n));
  };
  size_t dequant_cap = 0;
  int64_t dequant_cols = 0;
  dequant_need(S, &dequant_cap, &dequant_cols);
  // The split-K partials of the decode matmul (launch_mma_q8, 2..16 tokens, up to 64 with
  // FATHOM_MMQ_MAX_TOKENS) share their bytes with the dequant scratch when there is one: each is
  // scratch of one launch (the partials of one mma_q8 launch, the bf16 rows of one dequant +
  // cuBLASLt pair), all launches run in order on the engine's one stream (decode graphs replay
  // there too), and an mma_q8 block triggers its dependent launch only after its last read of
  // the partials. The tile arrival counters stay in their own bytes: they must be zero at every
  // launch, and the kernel leaves them so.
  const size_t mmq = mma_q8_workspace_bytes(std::min<int64_t>(r, kMmaQ8MaxTokens),
                                            std::max({2 * c.n_ff, qd + 2 * kvd, c.n_embd}));
  const bool shared_dq = share_mmq_partials && lt && dequant_cap > 0;
  const int64_t wide = std::max(c.n_embd, qd);
  add("x", r * c.n_embd * 4);
  add("h, att", r * wide * 4);  // shared (alloc_workspace)
  add("q, a", r * wide * 4);
  add("k", r * kvd * 4);
  add("v", r * kvd * 4);
  add("gate", r * S * 4);
  add("up", r * S * 4);
  add("logits", int64_t(max_batch) * c.n_vocab * 4);
  add("decode attention partials", int64_t(attn_ws_bytes));
  if (!shared_dq) add("mma_q8 counters + split-K partials", int64_t(mmq));
  add("argmax", int64_t(argmax_workspace_bytes(max_batch, c.n_vocab)));
  if (lt) {
    // x in 16 bits for the widest GEMM input: h, att, or the FFN intermediate (a slice of it,
    // or all n_ff columns of fewer tokens: T * n_ff <= r * S).
    const int64_t max_cols = std::max({c.n_embd, S, qd});
    add("gemm x 16-bit", r * max_cols * 2);
    add("cuBLASLt", int64_t(kLtWorkspace));
  }
  add("rng counters", int64_t(opt.max_batch + 1) * 8);  // max_seqs
  const InLayout il{r, max_batch};
  add("step inputs", il.size() * 4);
  add("sampled ids", max_batch * 4);
  const int64_t mbps = (n_ctx + opt.kv_block_size - 1) / opt.kv_block_size;
  add("batch block table", max_batch * mbps * 4);
  add("block tables", max_batch * mbps * 4);
  // Prefill of quantized weights dequantizes one chunk of rows to bf16 and runs cuBLASLt on it
  // (matmul_gemm.cu): the chunk takes whatever work_budget leaves, at least 256 rows of the
  // widest matrix, at most the largest matrix (or FFN slice of one) whole. Llama-3-8B Q4_K_M
  // (4.9 GB) at ubatch 2048 with FFN slices of 3584 columns: 32 MiB, Wq / Wo whole.
  // When the floor does not fit, the total exceeds the budget and load() picks a smaller chunk.
  // Shared: one buffer, the mma_q8 counters, then max(dequant scratch, mma_q8 partials).
  size_t dq = 0;
  if (!shared_dq && lt && dequant_cap > 0) {
    const size_t left = work_budget > p.bytes ? (work_budget - p.bytes) & ~(DeviceArena::kAlign - 1) : 0;
    dq = std::min(std::max(left, size_t(256) * size_t(dequant_cols) * 2), dequant_cap);
    add("dequant scratch", int64_t(dq));
  }
  if (shared_dq) {
    const size_t used = p.bytes + kMmaQ8WorkspaceCounterBytes;
    const size_t left = work_budget > used ? (work_budget - used) & ~(DeviceArena::kAlign - 1) : 0;
    const size_t floor_bytes = size_t(256) * size_t(dequant_cols) * 2;
    dq = std::min(std::max(left, floor_bytes), dequant_cap);
    const size_t partials = mmq - kMmaQ8WorkspaceCounterBytes;
    if (terms) {
      terms->push_back(Term{"mma_q8 counters", kMmaQ8WorkspaceCounterBytes});
      terms->push_back(Term{str_cat("dequant scratch (", format_bytes(dq), ") / mma_q8 partials (",
                                    format_bytes(partials), ")"),
                            std::max(dq, partials)});
    }
    p.add(kMmaQ8WorkspaceCounterBytes + std::max(dq, partials));
  }
  if (dequant_bytes) *dequant_bytes = dq;
  return p.bytes;
}

std::string describe_workspace(const std::vector<PrefillPlanner::Term>& terms, size_t budget) {
  std::string s;
  size_t total = 0;
  for (const PrefillPlanner::Term& t : terms) {
    s += str_cat("    ", format_bytes(t.bytes), "  ", t.name, "\n");
    total += align_up(t.bytes == 0 ? 1 : t.bytes, DeviceArena::kAlign);
  }
  return s + str_cat("    ", format_bytes(total), "  total (budget ", format_bytes(budget), ")\n");
}

// Prefill chunk (ubatch) and FFN slice width (ffn_slice). Every chunk of a quantized model
// dequantizes all its weights again (~18 GB of traffic for Llama-3-8B, ~4.5 ms on the H200), and
// cuBLASLt runs faster at larger M, so a larger chunk pays -- but the activations grow with it
// (~199 kB per token for the 8B shape with the FFN whole, ~100 kB with it in 4 slices; h/att and
// q/a share buffers, alloc_workspace).
//   1. The largest ubatch in kMaxUbatch .. kMinSlicedUbatch (powers of two) whose workspace fits
//      work_budget with the FFN whole, else in 2..kMaxFfnSlices column slices (widest first),
//      with the dequant scratch holding the largest (sliced) quantized matrix whole.
//   2. Else the largest power of two <= 512 (down to 64) that fits with the FFN whole, the
//      dequant scratch taking what is left (row chunks).
// Worked example, Llama-3-8B: F16 (16.1 GB, budget 787 MB): 2048 tokens, FFN whole. Q4_K_M
// (4.91 GB, budget 240.7 MB; tests/test_prefill_plan.cpp prints every term): 2048 tokens in 4
// slices of 3584 columns: x, h/att, q/a 33.5 MB each, k, v 8.4 each, gate, up 29.4 each, the bf16
// x 16.8, cuBLASLt 4.2, decode attention ~1, and the dequant scratch holding Wq whole, 33.5 MB,
// in the same bytes as the decode matmul's 33.5 MB of split-K partials: 232.3 MB (4.73%). When
// the partials had bytes of their own, 2048 tokens left the scratch 25.3 MB at best (6 slices),
// under Wq's 33.5, and the plan took 1024 tokens in 2 slices of 7168 (230.2 MB): pp4096 27.8k
// tok/s on the H200 (bench/device_s14_final.sh), 28.9k with one 4096-token chunk (`--ubatch 4096`,
// 1 GB of workspace).
// Q8_0 (8.5 GB): 2048 tokens. Models whose budget fits no 1024-token chunk keep the old rule
// (gemma3-270m, llama3.2-1b Q4_K_M). opt.ubatch fixes the chunk (the widest slice that fits, else
// whole); FATHOM_FFN_SLICE=N forces slices of N columns (a multiple of 256; tests, A/B runs).
// Slicing needs GEMM-capable FFN weights (F32 ones take fp32 GEMV slices, which take no column
// slice), slices that stay on the dequantized path when the whole matrix is on it, and chunks the
// GEMV (<= kGemvMaxTokens tokens, never sliced) always fits whole (gate/up buffers of r x S).
bool PrefillPlanner::slice_ok(int64_t r, int64_t S) const {
  const int64_t F = cfg.n_ff;
  if (S >= F) return true;
  if (!ffn_sliceable || r * S < kGemvMaxTokens * F) return false;
  for (const DequantMat& m : dequant_mats)
    if ((m.ffn == 1 && std::min(m.rows, S) * m.cols < dequant_min) ||
        (m.ffn == 2 && m.rows * std::min(m.cols, S) < dequant_min))
      return false;
  return true;
}

void PrefillPlanner::choose_prefill_chunk(const Model& model) {
  const int64_t F = cfg.n_ff;
  auto rows_of = [&](int64_t ub) { return std::max<int64_t>(ub, max_batch); };
  ffn_sliceable = F >= 2 * kFfnSliceAlign && F % 32 == 0;
  for (const LayerWeights& l : model.weights.layers)
    for (const WeightRef* r : {&l.ffn_gate, &l.ffn_up, &l.ffn_down})
      ffn_sliceable = ffn_sliceable && *r && r->type() != GgmlType::F32;
  auto slice_ok = [&](int64_t ub, int64_t S) { return this->slice_ok(rows_of(ub), S); };
  half_rows = 0;
  half_slices.clear();
  half_dequant_bytes = 0;
  std::vector<int64_t> slices{F};
  int64_t forced = 0;
  if (const char* e = std::getenv("FATHOM_FFN_SLICE"); e && *e) {
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    FATHOM_CHECK(end && *end == '\0' && v > 0 && v % kFfnSliceAlign == 0, "FATHOM_FFN_SLICE='", e,
                 "' is not a positive multiple of ", kFfnSliceAlign, " (FFN columns per slice)");
    forced = std::min<int64_t>(v, F);
    slices = {forced};
  } else {
    for (int64_t k = 2; k <= kMaxFfnSlices; ++k) {
      const int64_t S = ((F + k - 1) / k + kFfnSliceAlign - 1) / kFfnSliceAlign * kFfnSliceAlign;
      if (S < slices.back()) slices.push_back(S);
    }
  }
  auto fits = [&](int64_t ub, int64_t S, bool whole_dequant) {
    if (!slice_ok(ub, S)) return false;
    size_t dq = 0, cap = 0;
    int64_t cols = 0;
    if (plan_workspace(rows_of(ub), need_lt, &dq, S) > work_budget) return false;
    dequant_need(S, &cap, &cols, true);
    return !whole_dequant || dq >= cap;
  };
  // The chunk and the slice of full passes (the rule above), then the half passes' slice.
  [&] {
    if (opt.ubatch > 0) {
      ubatch = opt.ubatch;
      ffn_slice = F;
      for (int64_t S : slices)
        if (fits(ubatch, S, false) || (forced && slice_ok(ubatch, S))) {
          ffn_slice = S;
          break;
        }
      return;
    }
    for (int64_t ub = kMaxUbatch; ub >= kMinSlicedUbatch; ub /= 2)
      for (int64_t S : slices)
        if (fits(ub, S, true)) {
          ubatch = ub;
          ffn_slice = S;
          return;
        }
    ffn_slice = forced && slice_ok(512, forced) ? forced : F;
    ubatch = 512;
    while (ubatch > 64 && plan_workspace(rows_of(ubatch), need_lt, nullptr, ffn_slice) > work_budget)
      ubatch /= 2;
    if (!slice_ok(ubatch, ffn_slice)) ffn_slice = F;
  }();
  if (!forced) choose_half_pass_slices(slices);
}

// Slices per pass. The session-15 plan gave every pass the slice of its largest chunk: Llama-3-8B
// Q4_K_M plans 2048-row passes with 4 slices of 3584 columns, and a 512-token prompt ran 4 slices
// too, where 2 of 7168 had run before (pp512 24.3k -> 21.6k tok/s on the H200); at batch 32 the
// plan is 5 slices of 3072 (2048 rows; 3 of 4864 before), and the decode step went 2529.6 ->
// 2261.5 tok/s. Every slice is a dequant + GEMM pair per matrix, whose fixed cost dominates at
// small M. A 7168-column gate slice needs 56 MiB of bf16 scratch; the scratch has 32 MiB (Wq
// whole), and the budget has 8 MiB left, not 24.
// A pass of T <= r / 2 rows (r = the plan's rows) uses half of each row buffer. Its q / a go in the
// upper half of the h / att buffer (h / att keep the lower half; they never alias q / a, as in the
// full layout), so the whole q / a buffer is free in such a pass; the arena puts it right after
// the dequant scratch, and the pass's scratch is the two together: Llama-3-8B at r = 2048,
// 32 MiB + 32 MiB = 64 MiB >= 56. No byte is added, so the workspace total is unchanged.
// half_slices: the candidate slices S wider than ffn_slice (widest first) with every layer matrix,
// with FFN slices of S, whole in that scratch (as rule 1 above) and slice_ok. A pass of T rows
// takes the widest whose (T, S) intermediate fits the gate/up buffers and the 16-bit x scratch
// (ffn_slice_for): Llama-3-8B batch 1, r x ffn_slice = 2048 x 3584, holds 1024 x 7168; batch 32,
// 2048 x 3072, holds 7168 columns up to T = 877, 4864 up to 1024.
// Needs the dequant scratch (quantized FFN on the GEMM path), a sliced FFN, r / 2 > kGemvMaxTokens,
// and q's offset in h (r / 2 rows) 256-byte aligned.
void PrefillPlanner::choose_half_pass_slices(const std::vector<int64_t>& slices) {
  if (!slices_per_pass || !need_lt || !ffn_dequant || ffn_slice >= cfg.n_ff) return;
  const int64_t r = std::max<int64_t>(ubatch, max_batch), half = r / 2;
  const int64_t qd = cfg.n_head * head_dim, wide = std::max(cfg.n_embd, qd);
  if (half <= kGemvMaxTokens || (size_t(half) * size_t(wide) * 4) % DeviceArena::kAlign != 0) return;
  size_t dq = 0;
  plan_workspace(r, need_lt, &dq);
  if (dq == 0) return;
  const size_t ext = align_up(dequant_region_bytes(r, dq), DeviceArena::kAlign) + qa_bytes(r);
  for (int64_t S : slices) {  // widest first; slices[0] = n_ff (whole)
    if (S <= ffn_slice) break;
    size_t cap = 0;
    int64_t cols = 0;
    dequant_need(S, &cap, &cols, true);
    if (cap <= ext && slice_ok(r, S)) half_slices.push_back(S);
  }
  if (half_slices.empty()) return;
  half_rows = half;
  half_dequant_bytes = ext;
}
}  // namespace fathom

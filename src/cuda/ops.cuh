// Host launchers of the CUDA kernels: the contract between the kernel files (src/cuda/<op>.cu,
// each named as its CPU twin in src/cpu/) and the engine that calls them.
//
// Conventions (same as include/fathom/cpu_ops.h):
//   - every pointer in a Params struct is a DEVICE pointer unless the comment says "host";
//   - activations are fp32, row-major; (n_tokens, n_embd) = n_tokens rows of n_embd floats;
//   - a weight W is (rows, cols) = GGUF ne {cols, rows}, kept in its GGUF block format on the
//     device (one row = ggml_row_bytes(type, cols) bytes, rows back to back); y = x @ W^T;
//   - each launcher enqueues on `stream`, never synchronises (except under
//     FATHOM_CUDA_SYNC_DEBUG), never allocates, and is safe inside CUDA graph capture: grids are
//     sized from the host-side upper bounds in the params (max_*), actual lengths are read from
//     device buffers so a captured graph can replay with new lengths;
//   - an unsupported combination (type, head_dim, ...) throws fathom::Error naming the values.
//
// Paged KV cache layout (agreed with the engine; matches fathom::KvBlockAllocator):
//   per layer, K and V are each an array of n_blocks physical blocks;
//   K block layout: [n_head_kv][block_size][head_dim] elements of KvType (fp16 for now), so one
//   token's head vector is head_dim contiguous elements (16-byte loads);
//   V block layout: the same, [n_head_kv][block_size][head_dim].
//   Token position p of sequence s lives in physical block block_table[s * max_blocks_per_seq +
//   p / block_size] at offset p % block_size; its "slot" is block * block_size + p % block_size.
//   Element (slot, kv_head, d) of K is at
//     k_cache[((slot / block_size) * n_head_kv + kv_head) * block_size * head_dim
//             + (slot % block_size) * head_dim + d].
//   The logical index of a cached token is its position (positions 0..kv_len-1 of a sequence).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fathom/ggml_type.h"
#include "fathom/model.h"

struct cublasLtContext;
typedef struct cublasLtContext* cublasLtHandle_t;

namespace fathom::cuda {

// Element type of the KV cache. Only F16 is implemented; the others are reserved so the cache
// layout and the params do not change when quantized KV lands.
enum class KvType : int32_t { F16 = 0, BF16 = 1, FP8_E4M3 = 2, INT8 = 3 };
size_t kv_type_bytes(KvType t);

// ---- embedding (embedding.cu) ----------------------------------------------------------------
// out[t] = scale * dequantize(tok_embd row tokens[t]).
// A token id outside [0, n_vocab) writes a row of zeros (the engine validates ids on the host).
struct EmbeddingParams {
  GgmlType type = GgmlType::F32;  // F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K
  const void* tok_embd = nullptr;  // (n_vocab, n_embd) in GGUF block format
  int64_t n_vocab = 0;
  int64_t n_embd = 0;              // multiple of the type's block size
  const int32_t* tokens = nullptr; // (n_tokens)
  int64_t n_tokens = 0;
  float scale = 1.0f;              // gemma3: sqrt(n_embd)
  float* out = nullptr;            // (n_tokens, n_embd)
};
void launch_embedding(const EmbeddingParams& p, cudaStream_t stream);

// ---- RMS norm (rms_norm.cu) ------------------------------------------------------------------
// Optional fused residual add, then RMS normalisation of each row:
//   if residual: x[r] += residual[r]          (x is updated in place: the residual stream)
//   out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w      (w nullable = 1)
// Per-head Q/K norm: n_rows = n_tokens * n_head, n = head_dim, out = x (in place), no residual.
struct RmsNormParams {
  float* x = nullptr;               // (n_rows, n); read, and written when residual != nullptr
  const float* residual = nullptr;  // (n_rows, n) nullable
  const float* w = nullptr;         // (n) fp32 nullable
  float* out = nullptr;             // (n_rows, n); may alias x
  int64_t n_rows = 0;
  int64_t n = 0;
  float eps = 1e-6f;
};
void launch_rms_norm(const RmsNormParams& p, cudaStream_t stream);

// ---- RoPE + paged KV write (rope.cu) ---------------------------------------------------------
// Rotates q in place and k (in place, fp32) with ggml rope semantics (NORM / NEOX pairing,
// freq_base, freq_scale, llama3 freq_factors; no YaRN), then stores k and v (fp32 -> KvType) into
// the paged cache at slot_mapping[t]. A slot < 0 skips the cache write for that token (padding).
//   theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i]
struct RopeKvParams {
  RopeType type = RopeType::NORM;
  int32_t n_rot = 0;                    // rotated dims per head, even, <= head_dim
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  const float* freq_factors = nullptr;  // (n_rot/2) nullable
  const int32_t* pos = nullptr;         // (n_tokens) positions
  int64_t n_tokens = 0;
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t head_dim = 0;                 // same for K and V; even
  float* q = nullptr;                   // (n_tokens, n_head, head_dim) rotated in place; nullable
  float* k = nullptr;                   // (n_tokens, n_head_kv, head_dim) rotated in place
  const float* v = nullptr;             // (n_tokens, n_head_kv, head_dim) nullable (no V write)
  // Cache (nullable k_cache: rotate only).
  KvType kv_type = KvType::F16;
  void* k_cache = nullptr;              // this layer's K blocks, layout above
  void* v_cache = nullptr;              // this layer's V blocks
  const int32_t* slot_mapping = nullptr;  // (n_tokens) physical slot per token, < 0 = skip
  int32_t block_size = 16;
};
void launch_rope_kv(const RopeKvParams& p, cudaStream_t stream);

// ---- gated activations (activation.cu) -------------------------------------------------------
// SWIGLU: out = silu(gate) * up;  GEGLU: out = gelu_tanh(gate) * up.   out may alias gate or up.
enum class GluKind : int32_t { SWIGLU = 0, GEGLU = 1 };
struct GluParams {
  GluKind kind = GluKind::SWIGLU;
  const float* gate = nullptr;  // (n_tokens, n)
  const float* up = nullptr;    // (n_tokens, n)
  float* out = nullptr;         // (n_tokens, n)
  int64_t n_tokens = 0;
  int64_t n = 0;
};
void launch_glu(const GluParams& p, cudaStream_t stream);

// x = cap * tanh(x / cap) in place (final-logit soft-capping).   x (n)
struct SoftcapParams {
  float* x = nullptr;
  int64_t n = 0;
  float cap = 0.0f;
};
void launch_softcap(const SoftcapParams& p, cudaStream_t stream);

// ---- matmul (matmul_gemv.cu for n_tokens <= kGemvMaxTokens, matmul_gemm.cu above) -------------
// y = x @ W^T (+ bias) (+ residual), fp32 accumulation.
//   GEMV: weights dequantized in registers, x in shared memory, each weight block read once for
//   all the batch columns.  GEMM: F16/BF16 weights through cuBLASLt when `lt` is set (x is
//   converted to the weight's 16-bit type in `scratch`); quantized weights through cuBLASLt when
//   `lt` and `dequant` are set (x to bf16 once, then W one chunk of rows at a time dequantized to
//   bf16 in `dequant`, one GEMM per chunk); every other case (and F32 weights) dequantizes one
//   weight tile at a time into shared memory as bf16 and multiplies on tensor cores (wmma).
constexpr int64_t kGemvMaxTokens = 16;
// Rows of a dequantized chunk are a multiple of this (64 fp32 = 256 bytes: each chunk's output
// columns y + r0 stay 256-byte aligned, as cuBLASLt prefers).
constexpr int64_t kGemmChunkAlign = 64;

// Engine-owned resources for the cuBLASLt paths (one per engine / stream). All nullable: without
// them every type takes the tiled tensor-core kernel.
struct GemmContext {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;       // cuBLASLt workspace
  size_t workspace_bytes = 0;
  void* scratch = nullptr;         // >= n_tokens * cols * 2 bytes: x in fp16/bf16
  size_t scratch_bytes = 0;
  // bf16 rows of a quantized W, one chunk (R, cols) at a time; R = gemm_dequant_chunk_rows().
  // Fewer than kGemmChunkAlign * cols * 2 bytes (and not the whole matrix): the tiled kernel.
  void* dequant = nullptr;
  size_t dequant_bytes = 0;
  // Matrices with fewer elements keep the tiled kernel. Without `plans` each chunk costs a
  // cuBLASLt heuristic query on the host (tens of us), which outweighed the GEMM for small
  // matrices (H200: gemma3-270m Q4_K_M pp512 fell from 29.9k to 16.1k tok/s through this path,
  // llama3-8b Q4_K_M rose from 3.6k to 15.9k). With plans cached the engine sets 0 (every
  // matrix) for models of 512 MB or more and 1 << 22 below (engine.cpp, kSmallModelBytes);
  // FATHOM_DEQUANT_MIN_ELEMENTS overrides it for A/B runs. 0 = always.
  int64_t dequant_min_elements = 0;
  // Per-shape cuBLASLt plans (descriptors + chosen algorithm), from gemm_plan_cache_create();
  // owned by whoever owns the context (the engine destroys it at unload). Nullable: without it
  // every cuBLASLt call builds its descriptors and asks the heuristic (tens of us on the host).
  struct GemmPlanCache* plans = nullptr;
};

struct MatmulParams {
  GgmlType type = GgmlType::F32;   // F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K
  const void* w = nullptr;         // (rows, cols) GGUF block format, rows back to back
  int64_t rows = 0;
  int64_t cols = 0;                // multiple of 32 (256 for K-quants)
  const float* x = nullptr;        // (n_tokens, cols)
  float* y = nullptr;              // (n_tokens, rows); must not alias x
  int64_t n_tokens = 0;
  const float* bias = nullptr;     // (rows) nullable
  const float* residual = nullptr; // (n_tokens, rows) nullable; may alias y (y += x @ W^T)
  const GemmContext* gemm = nullptr;  // host pointer, nullable
  // GEMM paths only (launch_matmul_gemm; launch_matmul_gemv ignores both, so only with
  // n_tokens > kGemvMaxTokens):
  // Elements from one row of W to the next; 0 = cols. Larger when W is the column slice
  // [c0, c0 + cols) of a wider matrix: w points at column c0 of row 0, c0 and w_ld multiples of
  // the type's block size (a slice of the FFN down projection, engine.cpp).
  int64_t w_ld = 0;
  // gemm->scratch already holds this x in the 16-bit type this call converts to (the previous
  // launch_matmul_gemm had the same x and n_tokens and gemm_x16_kind): skip the conversion.
  bool x16_ready = false;
};
void launch_matmul(const MatmulParams& p, cudaStream_t stream);
// The two paths, callable directly (tests, bench). launch_matmul picks by n_tokens.
void launch_matmul_gemv(const MatmulParams& p, cudaStream_t stream);
void launch_matmul_gemm(const MatmulParams& p, cudaStream_t stream);
// Rows per dequantized chunk launch_matmul_gemm uses for p: rows when the whole W fits in
// p.gemm->dequant_bytes, else the most that fit (a multiple of kGemmChunkAlign) evened out over
// the chunks; 0 when p takes another path (no context / no dequant scratch / F32 F16 BF16 /
// scratch under kGemmChunkAlign rows).
int64_t gemm_dequant_chunk_rows(const MatmulParams& p);
// What launch_matmul(p) leaves in p.gemm->scratch: 0 nothing (GEMV, tiled kernel, F32),
// 1 x as fp16 (F16 weights), 2 x as bf16 (BF16 weights, dequantized chunks). Two calls on the
// same x with the same nonzero kind can share one conversion (MatmulParams::x16_ready).
int gemm_x16_kind(const MatmulParams& p);
// Rows [r0, r0 + n_rows) of a quantized W (rows row_bytes apart; columns [0, cols) of each) as
// bf16 (n_rows, cols) row-major in out (16-byte aligned): the dequantization step of the chunked
// cuBLASLt path, exposed for the prefill benchmark (tests/gpu/test_prefill_bench.cu).
void launch_dequantize_rows_bf16(GgmlType type, const void* w, int64_t row_bytes, int64_t r0,
                                 int64_t n_rows, int64_t cols, void* out, cudaStream_t stream);
// True when the GEMV / GEMM kernels handle `type`.
bool matmul_supports(GgmlType type);

// Per-shape cuBLASLt plan cache (matmul_gemm.cu), for GemmContext::plans. A plan is keyed by
// everything cuBLASLt's choice depends on: m, n, k, leading dimensions, A/B/C/D types,
// transposes, epilogue, beta != 0, operand alignments and the workspace limit (not the pointers).
// The first call of a shape makes its descriptors and takes the heuristic's first algorithm (host
// work only: allowed during CUDA graph capture); later calls look it up, allocating nothing.
// One cache per engine / stream; not thread-safe.
GemmPlanCache* gemm_plan_cache_create();
void gemm_plan_cache_destroy(GemmPlanCache* cache);  // nullable; never throws
struct GemmPlanStats {
  int64_t plans = 0;   // shapes held
  int64_t hits = 0;    // cuBLASLt calls that found their plan
  int64_t misses = 0;  // cuBLASLt calls that made one
  int64_t timed = 0;   // plans whose algorithm gemm_plan_tune picked by timing
};
GemmPlanStats gemm_plan_cache_stats(const GemmPlanCache* cache);  // nullable: zeros

// One-time timed pick, at load: for every cuBLASLt call that launch_matmul_gemm would make for
// ps[i] (the F16/BF16 GEMM, or each dequantized chunk), ask the heuristic for up to
// max_candidates algorithms, time each on the real operand shapes and pointers (median of `reps`
// groups), and keep the fastest in ps[i].gemm->plans. Shapes already timed are skipped; params
// that take another path (n_tokens <= kGemvMaxTokens, tiled kernel, F32) are ignored.
// Overwrites ps[i].y (and residual), gemm->scratch and gemm->dequant with test data, and
// synchronises `stream`: call it before real work. Under graph capture, or with time_candidates
// false, or past budget_ms, plans get the heuristic's first pick only.
struct GemmTuneOptions {
  bool time_candidates = true;  // false: heuristic's first pick only (the engine times only with FATHOM_GEMM_TUNE=1)
  int max_candidates = 8;
  int reps = 5;
  double budget_ms = 2000.0;  // wall-clock cap on the timing of one call
};
struct GemmTuneReport {
  int64_t shapes = 0;      // distinct cuBLASLt shapes (plans) the params need
  int64_t timed = 0;       // of those, picked by timing in this call
  int64_t candidates = 0;  // algorithms timed
  int64_t changed = 0;     // timed picks other than the heuristic's first
  int64_t skipped = 0;     // shapes left at the heuristic's pick because the budget ran out
  double wall_ms = 0.0;
};
GemmTuneReport gemm_plan_tune(const MatmulParams* ps, size_t n, const GemmTuneOptions& opt,
                              cudaStream_t stream);

// ---- attention over the paged KV cache (attention.cu) ----------------------------------------
// Queries of n_seqs sequences packed back to back (varlen): the queries of sequence s are tokens
// [q_seq_start[s], q_seq_start[s+1]); query token t has position q_pos[t]; sequence s has
// kv_len[s] cached tokens (positions 0..kv_len[s]-1, the current chunk's K/V already written by
// launch_rope_kv). Prefill reads K/V from the paged cache too (one code path for chunked prefill).
//   out[t, h] = sum_j softmax_j(mask(softcap(scale * q[t,h] . k[j, h/g]))) v[j, h/g]
// mask: j < kv_len[s]; causal: j <= q_pos[t]; sliding_window > 0: q_pos[t] - j < window.
// A query with no visible key gets zeros.
// Path: max_q_len == 1 -> decode split kernel (attention_decode.cu: one warp per (split, kv head
// and head group, seq), all query heads of the group together, flash-decoding over chunks of kv
// positions cut on the device + a merge pass when a sequence has several); else the tiled prefill
// kernel (online softmax, no score matrix in memory).
struct AttentionParams {
  const float* q = nullptr;           // (n_tokens, n_head, head_dim)
  float* out = nullptr;               // (n_tokens, n_head, head_dim)
  const int32_t* q_pos = nullptr;     // (n_tokens)
  const int32_t* q_seq_start = nullptr;  // (n_seqs + 1)
  const int32_t* kv_len = nullptr;    // (n_seqs)
  const int32_t* block_table = nullptr;  // (n_seqs, max_blocks_per_seq) physical block ids
  int32_t max_blocks_per_seq = 0;
  const void* k_cache = nullptr;      // this layer's K blocks
  const void* v_cache = nullptr;
  KvType kv_type = KvType::F16;
  int32_t block_size = 16;
  int32_t n_seqs = 0;
  int64_t n_tokens = 0;
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t head_dim = 0;               // 64, 128 or 256 (K and V alike)
  float scale = 0.0f;                 // 0 = 1/sqrt(head_dim)
  float softcap = 0.0f;               // 0 = off
  bool causal = true;
  int32_t sliding_window = 0;         // 0 = off
  // Host-side upper bounds that size the grid (graph capture: use the capacities).
  int32_t max_q_len = 1;              // longest query run of one sequence
  int32_t max_kv_len = 0;             // longest kv_len
  // Decode split-K partials; attention_workspace_bytes(p) bytes, nullable when that is 0.
  // That size covers every max_kv_len up to p.max_kv_len; it is not monotone in n_seqs (fewer
  // sequences get more splits each), so take the max over the batch sizes that will run.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Decode only (max_q_len == 1): launch_rope_kv's work for these tokens fused in when rope.k is
  // set. q then holds the un-rotated queries and rope.k / rope.v the new tokens' un-rotated k and
  // their v (n_tokens, n_head_kv, head_dim); the kernel rotates q as it loads it, and key q_pos[t]
  // of sequence s (t = q_seq_start[s]) is the rotated rope.k row with rope.v, taken from
  // registers, not read from the cache, and stored (fp16) at cache slot rope.slot_mapping[t]
  // (< 0: not stored). rope.k_cache / v_cache must be this call's k_cache / v_cache; rope.q,
  // pos, n_tokens, heads and head_dim are ignored (q, q_pos and the fields above are used).
  // Same bits as launch_rope_kv followed by the unfused attention (rope_math.cuh).
  RopeKvParams rope;
};
size_t attention_workspace_bytes(const AttentionParams& p);
void launch_attention(const AttentionParams& p, cudaStream_t stream);

// ---- sampling (sampling.cu) ------------------------------------------------------------------
// Greedy: out_tokens[r] = argmax(logits[r]) (lowest id on a tie), two-pass block reduce;
// identical to fathom::sampling::argmax.
struct ArgmaxParams {
  const float* logits = nullptr;   // (n_rows, n_vocab)
  int64_t n_rows = 0;
  int64_t n_vocab = 0;
  int32_t* out_tokens = nullptr;   // (n_rows)
  void* workspace = nullptr;       // argmax_workspace_bytes(n_rows, n_vocab)
};
size_t argmax_workspace_bytes(int64_t n_rows, int64_t n_vocab);
void launch_argmax(const ArgmaxParams& p, cudaStream_t stream);

// Stochastic sampling, same stages as include/fathom/sampler.h (no penalties): top-k, temperature,
// softmax, top-p, min-p, then a draw. temp <= 0 falls back to argmax. Thresholds are found by
// radix selection over the logits (no sort); the draw walks the kept tokens in id order, which
// gives the same distribution as the CPU's sorted walk but not the same token for one u.
// RNG: u = splitmix64-based hash of (seed, rng_counter[r]) -> [0,1); the kernel increments
// rng_counter[r] after use, so a replayed graph draws fresh numbers.
struct SampleParams {
  const float* logits = nullptr;   // (n_rows, n_vocab)
  int64_t n_rows = 0;
  int64_t n_vocab = 0;
  float temp = 0.8f;
  int32_t top_k = 40;              // <= 0: off
  float top_p = 0.95f;             // >= 1: off
  float min_p = 0.05f;             // <= 0: off
  uint64_t seed = 0;
  uint64_t* rng_counter = nullptr; // (n_rows) device, incremented per draw
  int32_t* out_tokens = nullptr;   // (n_rows)
};
void launch_sample(const SampleParams& p, cudaStream_t stream);

}  // namespace fathom::cuda

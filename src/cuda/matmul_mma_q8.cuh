// Small-batch matmul of quantized weights on the tensor cores (matmul_mma_q8.cu):
//   y[t][r] = sum_k x[t][k] W[r][k] (+ bias[r]) (+ residual[t][r])   for t < n_tokens <= 64,
// W in its GGUF block format (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K), never dequantized to memory.
//
// Numerics (the same as the dp4a GEMV, matmul_gemv_q8.cuh): x is quantized per 32 elements to
// two int8 planes, x ~= u (254 q1 + q2), u = max|x_block| / (127 * 254), so each element moves by
// at most u / 2 = max|x_block| / 64516; both planes are extra columns of the mma (N = 2 n_tokens),
// the weight codes go to the tensor cores as int8 (mma.sync m16n8k32, m16n8k16 for Q6_K's 16-element
// scales), and every 32-element (Q6_K: 16) sub-block's integer dot is scaled in fp32 by weight scale
// times x scale. Write w_i = c_i + o_i with o_i the value of code 0. Q4_1 Q5_1 Q4_K Q5_K apply o_i
// with the exact fp32 x sum, so only c_i meets the rounded x; Q4_0 Q5_0 Q6_K fold the offset into
// signed codes and Q8_0 has none, so the whole w_i does:
//   |y - y_exact| <= sum_i |e_i| max|x_block(i)| / 64516 (+ fp32 rounding),
//   e_i = w_i - o_i (Q4_1 Q5_1 Q4_K Q5_K),  e_i = w_i (Q4_0 Q5_0 Q8_0 Q6_K).
//
// One launch serves, like launch_gemv_q8:
//   - a plain matmul (1 segment, optional bias and residual; residual may alias seg[0].y);
//   - up to 3 matrices with the same x, type and cols (Q, K, V): each segment its own y and bias;
//   - gate + up with the activation fused (glu): seg[0].y[t][r] = act(x . gate[r]) * (x . up[r]);
//     seg[1].y is not written.
// The launch allocates nothing and never synchronizes the host (CUDA-graph capturable); split-K
// partials and the per-tile arrival counters live in the caller's workspace. When x of n_tokens
// fits shared memory only with more splits than the workspace holds partials for (the 8B LM head
// at 32 tokens; 40+ tokens without a workspace), the tokens run as consecutive launches of about
// half as many, each reading W again. Speed and routing: docs/perf/mma_q8.md (the engine uses it
// for 2..16 tokens, and Q4_K up to 64 through the bf16 variant).
//
// The bf16 variant (Q4_K from mma_q8_bf16's token count on): weights dequantized in registers to
// bf16 with their sub-block scale folded in (s q, s = bf16(d sc), rounded twice), x rounded to
// bf16, the mins applied as -dmin m times the bf16-rounded fp32 sum of each 32-block of x, fp32
// accumulation on the tensor cores over the whole K range. Each bf16 rounding is within 2^-8
// relative (8 significant bits); a product meets three (s, s q, x), a min term two. Per output:
//   |y - y_exact| <= 3.02 * 2^-8 sum_i |c_i x_i| + 2.01 * 2^-8 sum_j |o_j X_j| + fp32 accumulation,
// c_i = d sc q_i the scaled code, o_j = -dmin m_j the sub-block's offset, X_j its 32 x summed.
// The dequantize-to-bf16 + cuBLASLt path it replaces at these sizes rounds twice (the whole
// weight, and x): the same class, one rounding more here.
// Q6_K in the variant (mma_q8_set_bf16_q6k): s = bf16(d sc_j) per 16-element sub-block, the code as
// the exact bf16 q - 32, one rounding of (q - 32) s, x rounded to bf16, no offset term:
//   |y - y_exact| <= 3.02 * 2^-8 sum_i |w_i x_i| + fp32 accumulation.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/ops.cuh"
#include "fathom/ggml_type.h"

namespace fathom::cuda {

constexpr int64_t kMmaQ8MaxTokens = 64;

struct MmaQ8Segment {
  const void* w = nullptr;      // (rows, cols) GGUF blocks, rows back to back, 16-byte aligned
  int64_t rows = 0;
  float* y = nullptr;           // (n_tokens, rows)
  const float* bias = nullptr;  // (rows) nullable
};

struct MmaQ8Params {
  GgmlType type = GgmlType::Q4_K;
  int64_t cols = 0;                 // multiple of 256; rows of whole 16-byte multiples (mma_q8_supports)
  const float* x = nullptr;         // (n_tokens, cols) fp32, 16-byte aligned
  int64_t n_tokens = 0;             // 1..kMmaQ8MaxTokens
  int n_seg = 1;                    // 1..3 (2 with glu)
  MmaQ8Segment seg[3];
  const float* residual = nullptr;  // (n_tokens, rows): n_seg == 1 only; may alias seg[0].y
  bool glu = false;                 // seg[0] = gate, seg[1] = up (same rows); output to seg[0].y
  GluKind glu_kind = GluKind::SWIGLU;
  // Split-K scratch: mma_q8_workspace_bytes() bytes, 256-byte aligned, its first
  // kMmaQ8WorkspaceCounterBytes zero before the first launch (the kernel leaves them zero again).
  // Nullable: then every launch runs without split-K (slower on matrices of few row tiles), and
  // one token's x over the whole row must fit in shared memory beside the weight ring (and, for
  // the K-quants, the 18 KB of decoded scales): on an H200 rows longer than ~8k (Q6_K), ~10k
  // (Q8_0) or ~11k (Q4_K) columns then fail with "no launch plan fits" -- pass a workspace for
  // those (the engine always does; found by review, not by a test).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // false: the int8 kernel even where mma_q8_bf16(type, n_tokens) would take the bf16 variant (the
  // engine clears it for matrices it would not dequantize to bf16, keeping their more precise path).
  bool allow_bf16 = true;
  // Tests and benchmarks only: when set, grid x kMmaQ8ProbeSlots values (mma_q8_plan(p).grid CTAs)
  // that thread 0 of every CTA fills with the clock64 at its phase boundaries (slots below), so a
  // bench can split the kernel's time into start-up, x staging, per-stage waits and compute. A
  // launch that runs as two token chunks probes the first only.
  unsigned long long* probe = nullptr;
};

// MmaQ8Params::probe slots of one CTA: global timer (ns) at start and end; clock64 at start, after
// griddepcontrol.wait, after x staging, before the ring wait and after the stage barrier of each of
// its first kMmaQ8ProbeItems (tile, stage) items (2 slots each), and after the last item; its item
// count and SM id.
constexpr int kMmaQ8ProbeItems = 24;
enum : int {
  kMmaQ8ProbeStartNs = 0,
  kMmaQ8ProbeStart,
  kMmaQ8ProbePdl,
  kMmaQ8ProbeX,
  kMmaQ8ProbeItem0,
  kMmaQ8ProbeEnd = kMmaQ8ProbeItem0 + 2 * kMmaQ8ProbeItems,
  kMmaQ8ProbeEndNs,
  kMmaQ8ProbeItems_,
  kMmaQ8ProbeSm,
  kMmaQ8ProbeSlots
};

constexpr size_t kMmaQ8WorkspaceCounterBytes = 4096 * sizeof(int);

// True when the kernel handles `type` at n_tokens x cols: the types above, cols a multiple of 256
// whose rows are a multiple of 16 bytes (Q6_K: cols a multiple of 2048). FATHOM_MMQ=0 in the
// environment switches the path off (A/B runs).
bool mma_q8_supports(GgmlType type, int64_t n_tokens, int64_t cols);
// Workspace that lets launches of up to max_tokens tokens and max_rows output rows (gate + up rows
// together for a fused GLU) take the split-K counts the planner wants: the counters plus partial
// sums, capped at 32 MB (beyond that the planner picks fewer splits).
size_t mma_q8_workspace_bytes(int64_t max_tokens, int64_t max_rows);
void launch_mma_q8(const MmaQ8Params& p, cudaStream_t stream);

// The launch plan for p (tests and benchmarks print it): split-K count, CTAs, k-stages per split,
// and whether the bf16 variant runs.
struct MmaQ8Plan {
  int splits = 0, grid = 0, tiles = 0, kstages = 0, nt = 0;
  size_t smem = 0;
  bool bf16 = false;
};

// True when a launch of `type` at n_tokens takes the bf16 variant (Q4_K, and Q6_K where switched on
// below, from a token count that FATHOM_MMQ_BF16_MIN overrides). mma_q8_set_bf16_min_tokens(n > 0)
// overrides both (tests; 65 = never); 0 restores them.
bool mma_q8_bf16(GgmlType type, int64_t n_tokens);
void mma_q8_set_bf16_min_tokens(int n);
// Q6_K in the bf16 variant (sm_90 tensor-map rings only): off by default until GPU-measured;
// FATHOM_MMQ_BF16_Q6K=1 or mma_q8_set_bf16_q6k(1) turns it on, (0) off, (-1) back to the environment.
void mma_q8_set_bf16_q6k(int v);
MmaQ8Plan mma_q8_plan(const MmaQ8Params& p);

}  // namespace fathom::cuda

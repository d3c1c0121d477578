// The fp32 CPU reference ops: the oracle every CUDA kernel is compared against.
//
// Each function here has a CUDA twin of the same name (fathom::cuda::<op>, src/cuda/<op>.cu).
// Everything is fp32, row-major, plain loops; matmul alone is parallel over output rows.
// Shapes are written math-style: (n_tokens, n_embd) means n_tokens rows of n_embd contiguous
// floats. A weight matrix W is (rows, cols) = GGUF ne {cols, rows}: y = x @ W^T.
#pragma once

#include <cstdint>

#include "fathom/ggml_type.h"
#include "fathom/model.h"

namespace fathom {
namespace cpu {

// ---- weights ---------------------------------------------------------------------------------

// Embedding lookup (ggml get_rows): out[t] = dequantize(tok_embd row tokens[t]).
//   tok_embd (n_vocab, n_embd) any dequantizable type, tokens (n_tokens) -> out (n_tokens, n_embd)
// Throws when a token id is outside [0, n_vocab).
void embedding(const WeightRef& tok_embd, const int32_t* tokens, int64_t n_tokens, float* out);
void embedding(GgmlType type, const void* tok_embd, int64_t n_vocab, int64_t n_embd,
               const int32_t* tokens, int64_t n_tokens, float* out);

// Matrix multiply against a (possibly quantized) weight: y = x @ W^T.
//   W (rows, cols) any dequantizable type, x (n_tokens, cols) -> y (n_tokens, rows)
// Each y[t][r] = dequantize(W row r) . x[t], accumulated in double (the oracle has no fp32
// summation error; a GPU kernel accumulating in fp32 differs by ~sqrt(cols) * 2^-24 relative).
// n_threads <= 0: std::thread::hardware_concurrency(). Threads split the output rows.
void matmul(const WeightRef& w, const float* x, float* y, int64_t n_tokens, int n_threads = 0);
void matmul(GgmlType type, const void* w, int64_t rows, int64_t cols, const float* x, float* y,
            int64_t n_tokens, int n_threads = 0);

// Dequantizes a whole 1-D or 2-D weight to fp32: out (rows * cols).
void dequantize_weight(const WeightRef& w, float* out);

// Test-only operand hook: lets a test emulate a GPU's lower-precision matmul operands (bf16/fp16
// tensor-core prefill) on the reference. When set, matmul passes a copy of x (weight = false,
// n = n_tokens * cols) and every dequantized weight row (weight = true, n = cols) through it,
// in place, before the dot products; type and n_tokens say which GPU path the call would take.
// The hook is called from matmul's worker threads at once, so it must be a pure function.
// Process-wide: set it only while no matmul runs; nullptr (the default) restores exact fp32.
using MatmulOperandHook = void (*)(GgmlType type, int64_t n_tokens, bool weight, float* data,
                                   int64_t n);
void set_matmul_operand_hook(MatmulOperandHook hook);

// ---- elementwise / row ops -------------------------------------------------------------------

// RMS normalisation per row: out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w   (w nullable = 1).
//   x (n_rows, n), w (n) -> out (n_rows, n). out may alias x.
// Gemma's (1 + w) is already folded into the GGUF weight by llama.cpp's converter.
// Per-head Q/K norm (qwen3, gemma3) is this op with n_rows = n_tokens * n_head, n = head_dim.
void rms_norm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n, float eps);

// y[t] += b for every row: y (n_tokens, n), b (n).
void add_bias(float* y, const float* b, int64_t n_tokens, int64_t n);

// out = a + b (residual add): a, b, out (n). out may alias a or b.
void add(const float* a, const float* b, float* out, int64_t n);

// x *= s in place: x (n).
void scale(float* x, int64_t n, float s);

// SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).  gate, up, out (n); out may alias.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// GeGLU with tanh GELU (gemma): out = gelu_tanh(gate) * up,
//   gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).  gate, up, out (n).
void geglu(const float* gate, const float* up, float* out, int64_t n);
float gelu_tanh(float g);
float silu(float g);

// Logit soft-capping in place: x = cap * tanh(x / cap).  x (n); cap > 0.
void softcap(float* x, int64_t n, float cap);

// Numerically stable softmax of each row in place: x (n_rows, n). -inf entries get 0;
// a row that is entirely -inf becomes all zeros.
void softmax(float* x, int64_t n_rows, int64_t n);

// ---- rotary position embedding ---------------------------------------------------------------

// ggml's rope (ggml_rope_ext), including linear scaling, llama3 frequency factors and YaRN.
// For rotated pair index i in [0, n_rot/2):
//   theta_extrap = pos * freq_base^(-2i / n_rot) / freq_factors[i]   (factors nullable = 1)
//   theta_interp = freq_scale * theta_extrap
//   theta = theta_interp, or with ext_factor != 0 the YaRN ramp mix of the two,
//   and cos/sin are multiplied by attn_factor (times 1 + 0.1 ln(1/freq_scale) under YaRN).
// NORM pairs dims (2i, 2i+1) (llama); NEOX pairs (i, i + n_rot/2) (qwen, gemma).
// Dims >= n_rot pass through unchanged.
struct RopeParams {
  RopeType type = RopeType::NORM;
  int64_t n_rot = 0;                     // rotated dims per head, even, <= head_dim
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;               // 1 / linear scaling factor
  const float* freq_factors = nullptr;   // (n_rot/2) llama3 `rope_freqs`, nullable
  float ext_factor = 0.0f;               // YaRN extrapolation mix; 0 = off
  float attn_factor = 1.0f;              // YaRN magnitude scale
  float orig_ctx = 0.0f;                 // YaRN original context (n_ctx_orig)
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
};

// Rotates x in place: x (n_tokens, n_heads, head_dim), pos (n_tokens).
void rope(float* x, const int32_t* pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          const RopeParams& p);

// RopeParams for one layer of a model (gemma3: sliding-window layers use rope_freq_base_swa and
// no linear scaling). freq_factors (n_rot/2, nullable) is stored as given; it must outlive p.
RopeParams rope_params_for_layer(const ModelConfig& cfg, int64_t layer,
                                 const float* freq_factors);

// llama3 frequency factors computed from rope.scaling metadata, for files that carry the
// scaling parameters but no `rope_freqs` tensor. Returns (n_rot/2) factors.
//   wavelen = 2 pi / base^(-2i/n_rot); factor 1 above high-frequency wavelength,
//   `factor` below low-frequency wavelength, smooth interpolation between.
void llama3_freq_factors(int64_t n_rot, float freq_base, float factor, float low_freq_factor,
                         float high_freq_factor, float orig_ctx, float* out);

// ---- attention -------------------------------------------------------------------------------

struct AttentionParams {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;       // GQA: query head h reads kv head h / (n_head / n_head_kv)
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  float scale = 0.0f;          // scores = scale * q.k; 0 = 1/sqrt(head_dim_k)
  float softcap = 0.0f;        // scores = softcap * tanh(scores / softcap) after scaling; 0 = off
  bool causal = true;          // key j is visible to query i only when kv_pos[j] <= q_pos[i]
  int64_t sliding_window = 0;  // >0: key j visible only when q_pos[i] - kv_pos[j] < window
};

// Scaled dot-product attention over a KV cache, one softmax per (query token, head):
//   q (n_q, n_head, head_dim_k), q_pos (n_q)
//   k (n_kv, n_head_kv, head_dim_k), v (n_kv, n_head_kv, head_dim_v), kv_pos (n_kv) nullable
//     (null = positions 0..n_kv-1, the cache layout)
//   -> out (n_q, n_head, head_dim_v)
// out[i,h] = sum_j softmax_j(mask(softcap(scale * q[i,h] . k[j,h/g]))) v[j,h/g].
// A query with no visible key gets zeros.
void attention(const float* q, const int32_t* q_pos, int64_t n_q, const float* k, const float* v,
               const int32_t* kv_pos, int64_t n_kv, const AttentionParams& p, float* out);

// True when key position kv_pos is visible to query position q_pos under p's mask.
bool attention_visible(const AttentionParams& p, int32_t q_pos, int32_t kv_pos);

}  // namespace cpu
}  // namespace fathom

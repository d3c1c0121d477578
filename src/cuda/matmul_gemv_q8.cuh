// Decode GEMV with int8 activations (matmul_gemv_q8.cu): y = x @ W^T for 1..8 tokens and the
// quantized weight types, several matrices of one type and shape class in one launch.
//
// x is quantized per 32 elements to two int8 planes, x ~= u (254 q1 + q2) with u = max|x| /
// (127 * 254), inside the kernel, once per block, and the weights' integer codes are multiplied
// with both planes by dp4a; each 32-element x block also carries its exact fp32 sum for the
// types' offset/min terms. Each element of x moves by at most u / 2 = max|x_block| / 64516.
// Write each weight as w_i = c_i + o_i, o_i its block's offset or min (the value of code 0) and
// c_i the scaled code. Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K apply o_i with the exact x sum, so only c_i
// meets the rounded x; Q8_0 (o = 0), Q6_K and Q3_K (offset inside the signed dp4a codes) and Q2_K
// (mins times a dp4a sum of the rounded x) multiply the whole w_i with it. Hence
//   |y - y_exact| <= sum_i |e_i| max|x_block(i)| / 64516 (+ fp32 rounding),
//   e_i = c_i = w_i - o_i for the first six types, e_i = w_i for the other four,
// the bound the tests use (tests/gpu/test_q8_bound.h). |c_i| can reach about 2 |w_i| (Q4_0: a
// code of 15 against the offset 8), so sum |w_i| alone is not a bound for those six.
//
// One launch serves:
//   - a plain matmul (1 segment, optional bias and residual: y = x W^T + b + res, res may alias y);
//   - up to 3 matrices with the same x, type and cols (Q, K, V): each segment its own y and bias;
//   - gate + up with the activation fused (glu): out[t][r] = act(x . gate[r]) * (x . up[r]),
//     written to seg[0].y; seg[1].y is not written.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/ops.cuh"
#include "fathom/ggml_type.h"

namespace fathom::cuda {

constexpr int64_t kGemvQ8MaxTokens = 8;

struct GemvQ8Segment {
  const void* w = nullptr;      // (rows, cols) GGUF block format
  int64_t rows = 0;
  float* y = nullptr;           // (n_tokens, rows)
  const float* bias = nullptr;  // (rows) nullable
};

struct GemvQ8Params {
  GgmlType type = GgmlType::Q4_K;
  int64_t cols = 0;               // multiple of 32 (256 for K types)
  const float* x = nullptr;       // (n_tokens, cols) fp32
  int64_t n_tokens = 0;           // 1..kGemvQ8MaxTokens
  int n_seg = 1;                  // 1..3 (2 with glu)
  GemvQ8Segment seg[3];
  const float* residual = nullptr;  // (n_tokens, rows): n_seg == 1 only; may alias seg[0].y
  bool glu = false;               // seg[0] = gate, seg[1] = up (same rows); output to seg[0].y
  GluKind glu_kind = GluKind::SWIGLU;
  // Fused RMS norm of x (llama-style pre-norm): when norm_w is set the kernel multiplies
  // against x[t] * rsqrt(mean(x[t]^2) + norm_eps) * norm_w instead of x (x itself is unchanged).
  const float* norm_w = nullptr;  // (cols) nullable
  float norm_eps = 1e-6f;
};

// True when the int8-activation path handles `type` at n_tokens x cols: x of all the columns is
// staged whole in shared memory beside the weight rings, so long rows at 4..8 tokens may not fit
// (then the fp32 GEMV serves them); FATHOM_GEMV_Q8=0 in the environment switches the path off.
bool gemv_q8_supports(GgmlType type, int64_t n_tokens, int64_t cols);
void launch_gemv_q8(const GemvQ8Params& p, cudaStream_t stream);

// Test hook: the one-token Q4_K kernel for launches after the call: 0 the bulk-copy ring kernel
// (sm_90 code on a 9.x device only; elsewhere the pair kernel), 1 the pair kernel, 2 the
// shared-memory-ring kernel; -1 back to FATHOM_GEMV_Q4K (bulk | pair, default bulk).
void gemv_q8_set_q4k_override(int kernel);

// Test hook: the Q4_K bulk kernel's stage for launches after the call: 0 8 super-blocks per row
// and stage with 4 ring slots, 1 16 super-blocks with 2 slots; -1 back to FATHOM_GEMV_Q4K_STAGE
// (16 | 8, default 16).
void gemv_q8_set_q4k_stage_override(int stage16);

// Test hook: the one-token Q8_0 kernel for launches after the call: 0 the bulk-copy ring kernel
// (sm_90 code on a 9.x device, cols % 256 == 0; elsewhere the shared-memory-ring kernel), 1 the
// shared-memory-ring kernel; -1 back to FATHOM_GEMV_Q8_0 (bulk | ring, default bulk).
void gemv_q8_set_q80_override(int kernel);

// Test hook: the one-token Q6_K kernel for launches after the call: 0 the bulk-copy ring kernel
// (sm_90 code on a 9.x device, cols % 2048 == 0; elsewhere the register-direct kernel), 1 the
// register-direct kernel; -1 back to FATHOM_GEMV_Q6K (bulk | direct, default bulk).
void gemv_q8_set_q6k_override(int kernel);

}  // namespace fathom::cuda

// The error bound of the int8-activation GEMV (src/cuda/matmul_gemv_q8.cuh), shared by the tests
// that run it (test_gemv_q8.cpp, test_ops_matmul.cpp).
//
// Derivation. The kernel rounds each x element to its 32-element block's two-plane grid,
// |x^_k - x_k| <= u / 2 = max|x_block(k)| / 64516 (matmul_gemv_q8.cu, x quantization). Write
// each weight as w_k = c_k + o_k, o_k its block's offset or min (the value the element has with
// code 0) and c_k the scaled code. Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K compute sum c_k x^_k + sum o_k x_k
// (the offset with the exact x sum), so their error is sum c_k (x^_k - x_k); Q8_0 (o = 0), Q6_K,
// Q3_K (offset inside the signed dp4a codes) and Q2_K (min times a dp4a sum of x^) compute
// sum w_k x^_k, error sum w_k (x^_k - x_k). So
//   |y - y_exact| <= sum_k |e_k| max|x_block(k)| / 64516,  e_k = c_k (first six) or w_k (others),
// times 1.001 for the fp32 computation of u and of the two codes (relative ~2^-22).
// fp32 rounding: every float the kernels form is a partial sum of terms of magnitude at most
// (|c_k| + |o_k|) |x_k|, accumulated over fewer than 2^8 roundings (tasks per lane, 5 shuffle
// levels, the K split), so 2^-16 sum_k (|c_k| + |o_k|) |x_k| bounds it.
// o_k comes from the CPU dequantizer itself: the block with its code bytes zeroed.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fathom/ggml_type.h"
#include "cuda/ops.cuh"
#include "fathom/quant.h"

namespace fathom::test {

struct Q8Form {
  int code_begin, code_end;  // byte range of a block that holds the codes (zero: code 0)
  bool offset_exact_sum;     // the offset / min is applied with the exact x sum
};

inline Q8Form q8_form(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return {2, 18, true};
    case GgmlType::Q4_1: return {4, 20, true};
    case GgmlType::Q5_0: return {2, 22, true};    // qh and qs
    case GgmlType::Q5_1: return {4, 24, true};
    case GgmlType::Q8_0: return {2, 34, false};
    case GgmlType::Q2_K: return {16, 80, false};  // qs
    case GgmlType::Q3_K: return {0, 96, false};   // hmask and qs
    case GgmlType::Q4_K: return {16, 144, true};
    case GgmlType::Q5_K: return {16, 176, true};  // qh and qs
    case GgmlType::Q6_K: return {0, 192, false};  // ql and qh
    default: return {0, 0, false};
  }
}

// Per element of a (rows, cols) matrix in GGUF blocks `wq` whose dequantization is `wd`:
// e[i] = |e_k| of the bound above and mag[i] = |c_k| + |o_k|.
struct Q8Parts {
  std::vector<double> e, mag;
};

inline Q8Parts q8_parts(GgmlType type, const std::vector<uint8_t>& wq, const std::vector<float>& wd, int64_t rows,
                        int64_t cols) {
  const Q8Form f = q8_form(type);
  const GgmlTypeTraits& tr = ggml_type_traits(type);
  std::vector<uint8_t> zq = wq;
  for (size_t b = 0; b + size_t(tr.block_bytes) <= zq.size(); b += size_t(tr.block_bytes))
    std::memset(zq.data() + b + f.code_begin, 0, size_t(f.code_end - f.code_begin));
  const size_t rb = ggml_row_bytes(type, cols);
  std::vector<float> off(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(type, zq.data() + size_t(r) * rb, off.data() + r * cols, cols);
  Q8Parts p;
  p.e.resize(off.size());
  p.mag.resize(off.size());
  for (size_t i = 0; i < off.size(); ++i) {
    const double w = wd[i], o = off[i];
    p.e[i] = f.offset_exact_sum ? std::fabs(w - o) : std::fabs(w);
    p.mag[i] = std::fabs(w - o) + std::fabs(o);
  }
  return p;
}

// The fused gate/up tests of both int8 kernels (test_gemv_q8, test_mma_q8): act(gate) * up and its
// tolerance from the gate / up references (the first `count` entries).
inline void glu_expect(fathom::cuda::GluKind kind, const std::vector<double>& wg, const std::vector<double>& tg,
                const std::vector<double>& wu, const std::vector<double>& tu, size_t count,
                std::vector<double>& want, std::vector<double>& tol) {
  want.resize(count);
  tol.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const double a = wg[i];
    const double act = kind == fathom::cuda::GluKind::SWIGLU
                           ? a / (1.0 + std::exp(-a))
                           : 0.5 * a * (1.0 + std::tanh(0.7978845608028654 * (a + 0.044715 * a * a * a)));
    want[i] = act * wu[i];
    // |d act/da| <= 1.2 for both on the real line: error of act(g) u + act(g) err(u).
    tol[i] = 1.2 * tg[i] * (std::fabs(wu[i]) + tu[i]) + std::fabs(act) * tu[i] + 1e-5 * std::fabs(want[i]) + 1e-6;
  }
}

}  // namespace fathom::test

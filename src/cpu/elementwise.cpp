// CPU reference elementwise and row ops: bias, residual add, GLU activations, softcap, softmax.
#include <cmath>
#include <limits>

#include "fathom/cpu_ops.h"

namespace fathom {
namespace cpu {

void add_bias(float* y, const float* b, int64_t n_tokens, int64_t n) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[i];
  }
}

void add(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

float silu(float g) { return g / (1.0f + std::exp(-g)); }

float gelu_tanh(float g) {
  const float k_sqrt_2_over_pi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + std::tanh(k_sqrt_2_over_pi * (g + 0.044715f * g * g * g)));
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

void geglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

void softcap(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

void softmax(float* x, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) {
    float* xr = x + r * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) mx = std::fmax(mx, xr[i]);
    if (mx == -std::numeric_limits<float>::infinity()) {
      for (int64_t i = 0; i < n; ++i) xr[i] = 0.0f;
      continue;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      xr[i] = std::exp(xr[i] - mx);
      sum += xr[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) xr[i] *= inv;
  }
}

}  // namespace cpu
}  // namespace fathom

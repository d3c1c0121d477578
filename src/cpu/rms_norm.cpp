// CPU reference RMS normalisation: out = x / sqrt(mean(x^2) + eps) * w.
#include <cmath>

#include "fathom/cpu_ops.h"

namespace fathom {
namespace cpu {

void rms_norm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* outr = out + r * n;
    // Sum of squares in double: the oracle should not carry fp32 accumulation error.
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) outr[i] = xr[i] * inv * (w ? w[i] : 1.0f);
  }
}

}  // namespace cpu
}  // namespace fathom

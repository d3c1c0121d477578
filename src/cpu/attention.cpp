// CPU reference attention: explicit scores, mask, softmax and weighted sum per (token, head).
#include <cmath>
#include <limits>
#include <vector>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"

namespace fathom {
namespace cpu {

bool attention_visible(const AttentionParams& p, int32_t q_pos, int32_t kv_pos) {
  if (p.causal && kv_pos > q_pos) return false;
  // Sliding window as llama.cpp (is_masked_swa) and HF: visible when q - kv < window.
  if (p.sliding_window > 0 && static_cast<int64_t>(q_pos) - kv_pos >= p.sliding_window) return false;
  return true;
}

void attention(const float* q, const int32_t* q_pos, int64_t n_q, const float* k, const float* v,
               const int32_t* kv_pos, int64_t n_kv, const AttentionParams& p, float* out) {
  FATHOM_CHECK(p.n_head > 0 && p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0,
               "attention: n_head ", p.n_head, " is not a multiple of n_head_kv ", p.n_head_kv);
  const int64_t dk = p.head_dim_k, dv = p.head_dim_v;
  const int64_t group = p.n_head / p.n_head_kv;
  const float scale = p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(dk));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> scores(static_cast<size_t>(n_kv));
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t h = 0; h < p.n_head; ++h) {
      const int64_t hkv = h / group;
      const float* qi = q + (i * p.n_head + h) * dk;
      // scores[j] = softcap(scale * q_i . k_j), or -inf when masked.
      for (int64_t j = 0; j < n_kv; ++j) {
        const int32_t pj = kv_pos ? kv_pos[j] : static_cast<int32_t>(j);
        if (!attention_visible(p, q_pos[i], pj)) {
          scores[j] = neg_inf;
          continue;
        }
        const float* kj = k + (j * p.n_head_kv + hkv) * dk;
        double dot = 0.0;
        for (int64_t d = 0; d < dk; ++d) dot += static_cast<double>(qi[d]) * kj[d];
        float s = static_cast<float>(dot) * scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        scores[j] = s;
      }
      softmax(scores.data(), 1, n_kv);
      // out_i = sum_j scores[j] v_j
      float* oi = out + (i * p.n_head + h) * dv;
      for (int64_t d = 0; d < dv; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j < n_kv; ++j) {
          if (scores[j] == 0.0f) continue;
          acc += static_cast<double>(scores[j]) * v[(j * p.n_head_kv + hkv) * dv + d];
        }
        oi[d] = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace cpu
}  // namespace fathom

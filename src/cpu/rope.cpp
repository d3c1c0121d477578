// CPU reference rotary position embedding, following ggml_rope_ext (ggml-cpu/ops.cpp):
// linear scaling, llama3 frequency factors and YaRN ramp, NORM and NEOX pairings.
#include <algorithm>
#include <cmath>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"

namespace fathom {
namespace cpu {
namespace {

constexpr double k_pi = 3.14159265358979323846;

// Dimension index at which YaRN's wavelength for `n_rot_turns` rotations in orig_ctx falls.
float yarn_corr_dim(int64_t n_dims, float orig_ctx, float n_rot_turns, float base) {
  return static_cast<float>(n_dims * std::log(orig_ctx / (n_rot_turns * 2 * k_pi)) /
                            (2 * std::log(base)));
}

// 1 for dims below `low` (pure extrapolation), 0 above `high` (pure interpolation).
float yarn_ramp(float low, float high, int64_t i0) {
  const float y = (static_cast<float>(i0 / 2) - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope(float* x, const int32_t* pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          const RopeParams& p) {
  const int64_t n_rot = p.n_rot > 0 ? p.n_rot : head_dim;
  FATHOM_CHECK(n_rot % 2 == 0 && n_rot <= head_dim, "rope: n_rot ", n_rot,
               " must be even and at most head_dim ", head_dim);
  float corr_low = 0.0f, corr_high = 0.0f;
  if (p.ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(n_rot, p.orig_ctx, p.beta_fast, p.freq_base)));
    corr_high = std::min(static_cast<float>(n_rot - 1),
                         std::ceil(yarn_corr_dim(n_rot, p.orig_ctx, p.beta_slow, p.freq_base)));
  }
  const int64_t half = n_rot / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const int64_t i0 = 2 * i;
      // theta_extrap = pos * base^(-2i/n_rot) / factor_i, computed in double for the oracle.
      const double inv_freq = std::pow(static_cast<double>(p.freq_base),
                                       -static_cast<double>(i0) / static_cast<double>(n_rot));
      const double ff = p.freq_factors ? p.freq_factors[i] : 1.0;
      const double theta_extrap = static_cast<double>(pos[t]) * inv_freq / ff;
      const double theta_interp = p.freq_scale * theta_extrap;
      double theta = theta_interp;
      double mscale = p.attn_factor;
      if (p.ext_factor != 0.0f) {
        const double ramp_mix = yarn_ramp(corr_low, corr_high, i0) * p.ext_factor;
        theta = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
        mscale *= 1.0 + 0.1 * std::log(1.0 / p.freq_scale);
      }
      const float c = static_cast<float>(std::cos(theta) * mscale);
      const float s = static_cast<float>(std::sin(theta) * mscale);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* xh = x + (t * n_heads + h) * head_dim;
        // NORM rotates adjacent pairs; NEOX rotates dim i with dim i + n_rot/2.
        const int64_t a = p.type == RopeType::NORM ? i0 : i;
        const int64_t b = p.type == RopeType::NORM ? i0 + 1 : i + half;
        const float x0 = xh[a], x1 = xh[b];
        xh[a] = x0 * c - x1 * s;
        xh[b] = x0 * s + x1 * c;
      }
    }
  }
}

RopeParams rope_params_for_layer(const ModelConfig& cfg, int64_t layer, const float* freq_factors) {
  RopeParams p;
  p.type = cfg.rope_type;
  p.n_rot = cfg.n_rot > 0 ? cfg.n_rot : cfg.head_dim_k;
  const bool swa = layer >= 0 && layer < static_cast<int64_t>(cfg.layer_is_swa.size()) &&
                   cfg.layer_is_swa[layer];
  if (cfg.arch == Arch::GEMMA3 && swa) {
    // Gemma 3 local layers: their own base, never scaled (llama.cpp rope_freq_scale_train_swa = 1).
    p.freq_base = cfg.rope_freq_base_swa;
    p.freq_scale = 1.0f;
    return p;
  }
  p.freq_base = cfg.rope_freq_base;
  p.freq_scale = cfg.rope_freq_scale;
  p.freq_factors = freq_factors;
  const bool yarn = cfg.rope_scaling_type == "yarn";
  p.ext_factor = cfg.rope_yarn_ext_factor >= 0.0f ? cfg.rope_yarn_ext_factor : (yarn ? 1.0f : 0.0f);
  p.attn_factor = cfg.rope_yarn_attn_factor;
  p.orig_ctx = cfg.rope_yarn_orig_ctx > 0 ? cfg.rope_yarn_orig_ctx
                                          : static_cast<float>(cfg.n_ctx_train);
  p.beta_fast = cfg.rope_yarn_beta_fast;
  p.beta_slow = cfg.rope_yarn_beta_slow;
  return p;
}

void llama3_freq_factors(int64_t n_rot, float freq_base, float factor, float low_freq_factor,
                         float high_freq_factor, float orig_ctx, float* out) {
  // As Meta's apply_scaling / llama.cpp's converter (generate_extra_tensors for llama3 rope).
  const double low_freq_wavelen = orig_ctx / low_freq_factor;
  const double high_freq_wavelen = orig_ctx / high_freq_factor;
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(freq_base),
                                       static_cast<double>(2 * i) / static_cast<double>(n_rot));
    const double wavelen = 2 * k_pi / freq;
    if (wavelen < high_freq_wavelen) {
      out[i] = 1.0f;
    } else if (wavelen > low_freq_wavelen) {
      out[i] = factor;
    } else {
      const double smooth = (orig_ctx / wavelen - low_freq_factor) /
                            (high_freq_factor - low_freq_factor);
      out[i] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
}

}  // namespace cpu
}  // namespace fathom

// The K-quant formats: 256-element super-blocks split into sub-blocks, each sub-block with its
// own small integer scale (and min), and those scales quantized again against one fp16 scale
// per super-block. Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//
// The quantizers are ggml's reference algorithms (quantize_row_q*_K_ref, without importance
// weights), step for step in fp32, so that other GGUF readers read our files exactly as theirs:
//   - per sub-block, a least-squares search for the scale (make_qx_quants / make_q3_quants for
//     the symmetric Q6_K / Q3_K, make_qkx2_quants with a min for Q2_K / Q4_K / Q5_K);
//   - the sub-block scales (and mins) are quantized to 4/6/8 bits against the largest one;
//   - every element is re-quantized against the *stored* (rounded) scale, so that dequantization
//     sees the quants that fit the scales it will actually use.
// Layouts: src/quant/blocks.h and docs/conventions.md.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fathom/quant.h"
#include "quant/blocks.h"

namespace fathom::quant {
namespace {

// Below this a group is treated as all zeros (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

template <typename Block>
Block load_block(const uint8_t* src, int64_t i) {
  Block b;
  std::memcpy(&b, src + i * sizeof(Block), sizeof(Block));
  return b;
}

template <typename Block>
void store_block(const Block& b, uint8_t* dst, int64_t i) {
  std::memcpy(dst + i * sizeof(Block), &b, sizeof(Block));
}

// ---- scale packing ----------------------------------------------------------------------------

// Q4_K / Q5_K: 8 scales and 8 mins of 6 bits in 12 bytes. Bytes 0-3 hold scales 0-3 in their low
// 6 bits, bytes 4-7 mins 0-3; scales/mins 4-7 keep their low 4 bits in the nibbles of bytes 8-11
// and their top 2 bits in the spare top bits of bytes 0-3 (scales) and 4-7 (mins).
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void set_scale_min_k4(int j, uint8_t* q, uint8_t sc, uint8_t m) {
  if (j < 4) {
    q[j] = sc;
    q[j + 4] = m;
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 0x0f) | ((m & 0x0f) << 4));
    q[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    q[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

// Q3_K: 16 scales of 6 bits in 12 bytes. Scale j keeps its low 4 bits in byte j (j < 8, low
// nibble) or byte j-8 (high nibble), and its top 2 bits in byte 8 + j%4 at bit 2*(j/4).
int q3k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// ---- scale searches (ggml's reference algorithms) -------------------------------------------------

// Symmetric quants L[i] + nmax, L in [-nmax, nmax-1], for a group of n values; returns the scale.
// Starts from the scale that puts the extreme value at -nmax, then tries 18 nearby scales and
// keeps the one whose weighted least-squares fit (weights x^2) explains most of the signal.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto quant = [&](float iscale, int i) { return std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))); };

  float iscale = -nmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = quant(iscale, i);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = quant(iscale, i);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    // sumlx^2 / suml2 is the signal energy the fit explains; compare without dividing.
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + quant(iscale, i));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit quants (nmax = 4) with iterative refinement: each element in turn moves to the
// quant that is best given the others, while the weighted fit improves (at most 5 sweeps).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0.0f) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// Asymmetric quants L in [0, nmax] with x ~ scale * L - the_min (the_min >= 0), for weights w.
// Starts from the min/max fit, then for nstep+1 candidate inverse scales (rmin + rdelta * is +
// nmax) / (max - min) solves the weighted least-squares scale and min for those quants and keeps
// the best by weighted squared (or absolute, use_mad) error.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.0f;
  }
  auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };

  float iscale = nmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    best_error += weights[i] * error_of(scale * L[i] + min - x[i]);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {  // a positive offset is not representable: refit the scale alone
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) cur_error += weights[i] * error_of(this_scale * Laux[i] + this_min - x[i]);
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Q2_K / Q3_K quant order: in each 128-element half, byte l of the 32-byte group holds elements
// l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQKK; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q4_K / Q5_K: per-sub-block (scale, min) search shared by both; returns the fits in
// scales[8] / mins[8] and the quants in L.
void fit_k4_subblocks(const float* x, int nmax, float rmin, int nstep, uint8_t* L, float* scales, float* mins) {
  float weights[32];
  uint8_t Laux[32];
  for (int j = 0; j < kQKK / 32; ++j) {
    const float* xs = x + 32 * j;
    // Weights favour large elements, floored by the sub-block's RMS so small ones still count.
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
  }
}

// Q4_K / Q5_K: quantizes the 8 sub-block scales and mins to 6 bits against their maxima, packs
// them, sets d/dmin, then re-quantizes every element against the stored scales.
void pack_k4_scales_and_requantize(const float* x, int nmax, const float* scales, const float* mins,
                                   uint16_t* d_out, uint16_t* dmin_out, uint8_t* packed, uint8_t* L) {
  float max_scale = 0.0f, max_min = 0.0f;  // scales are positive as the min is subtracted
  for (int j = 0; j < kQKK / 32; ++j) {
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, kKScaleBytes);
  for (int j = 0; j < kQKK / 32; ++j) {
    // Narrow to u8 before clamping, as ggml does (matters only for a negative fitted scale).
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    set_scale_min_k4(j, packed, ls, lm);
  }
  *d_out = fp32_to_fp16(max_scale / 63.0f);
  *dmin_out = fp32_to_fp16(max_min / 63.0f);

  for (int j = 0; j < kQKK / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, packed, &sc, &m);
    const float d = fp16_to_fp32(*d_out) * sc;
    if (d == 0.0f) continue;  // keep the search's quants: they all dequantize to -dm anyway
    const float dm = fp16_to_fp32(*dmin_out) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

// ---- dequantization ------------------------------------------------------------------------------

void dequantize_q2_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<BlockQ2_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      // Element e: 128-half h, bit pair p within the byte, byte l within the half's 32 bytes.
      const int h = e / 128, p = (e % 128) / 32, l = e % 32;
      const int q = (b.qs[32 * h + l] >> (2 * p)) & 3;
      const uint8_t sc = b.scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0x0f);
      const float ml = dmin * static_cast<float>(sc >> 4);
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

void dequantize_q3_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<BlockQ3_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, p = (e % 128) / 32, l = e % 32;
      const int low = (b.qs[32 * h + l] >> (2 * p)) & 3;
      // A set hmask bit means +4 relative to the stored offset of -4: q = low + 4*bit - 4.
      const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
      const float dl = d * static_cast<float>(q3k_scale(b.scales, e / 16));
      y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
    }
  }
}

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<BlockQ4_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int j = 0; j < kQKK / 32; ++j) {  // sub-block j: elements 32j .. 32j+31
      uint8_t sc, m;
      get_scale_min_k4(j, b.scales, &sc, &m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* qs = b.qs + 32 * (j / 2);  // 64-element chunk j/2
      const int shift = 4 * (j % 2);             // even sub-block: low nibbles, odd: high
      for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * static_cast<float>((qs[l] >> shift) & 0x0f) - ml;
    }
  }
}

void dequantize_q5_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<BlockQ5_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int j = 0; j < kQKK / 32; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, b.scales, &sc, &m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* qs = b.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int q = ((qs[l] >> shift) & 0x0f) | (((b.qh[l] >> j) & 1) << 4);  // qh bit j = sub-block j
        y[32 * j + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<BlockQ6_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      // 128-element halves h; within a half, quarter p (32 elements), lane l.
      // Low nibble: ql[64h + 32*(p%2) + l], low half for p < 2 and high half for p >= 2.
      // High 2 bits: qh[32h + l] at bits 2p..2p+1.
      const int h = e / 128, p = (e % 128) / 32, l = e % 32;
      const int low = (b.ql[64 * h + 32 * (p % 2) + l] >> (4 * (p / 2))) & 0x0f;
      const int high = (b.qh[32 * h + l] >> (2 * p)) & 3;
      const int q = (low | (high << 4)) - 32;
      y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q);
    }
  }
}

// ---- quantization --------------------------------------------------------------------------------

void quantize_q2_k(const float* src, uint8_t* dst, int64_t nb) {
  constexpr float kQ4Scale = 15.0f;  // sub-block scales and mins are 4-bit
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQKK;
    uint8_t L[kQKK], Laux[16];
    float weights[16], scales[kQKK / 16], mins[kQKK / 16];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kQKK / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    BlockQ2_K b;
    std::memset(&b, 0, sizeof(b));
    if (max_scale > 0.0f) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) b.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      b.d = fp32_to_fp16(max_scale / kQ4Scale);
    } else {
      b.d = fp32_to_fp16(0.0f);
    }
    if (max_min > 0.0f) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQKK / 16; ++j) b.scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
      b.dmin = fp32_to_fp16(max_min / kQ4Scale);
    } else {
      b.dmin = fp32_to_fp16(0.0f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = fp16_to_fp32(b.d) * (b.scales[j] & 0x0f);
      if (d == 0.0f) continue;
      const float dm = fp16_to_fp32(b.dmin) * (b.scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, b.qs);
    store_block(b, dst, i);
  }
}

void quantize_q3_k(const float* src, uint8_t* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQKK;
    int8_t L[kQKK];
    float scales[kQKK / 16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQKK / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    BlockQ3_K b;
    std::memset(&b, 0, sizeof(b));
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) {
        const int l = std::max(-32, std::min(31, nearest_int(iscale * scales[j]))) + 32;  // 6 bits
        if (j < 8)
          b.scales[j] = static_cast<uint8_t>(l & 0x0f);
        else
          b.scales[j - 8] |= static_cast<uint8_t>((l & 0x0f) << 4);
        b.scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      b.d = fp32_to_fp16(1.0f / iscale);
    } else {
      b.d = fp32_to_fp16(0.0f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = fp16_to_fp32(b.d) * q3k_scale(b.scales, j);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    uint8_t low[kQKK];
    for (int e = 0; e < kQKK; ++e) {
      if (L[e] > 3) b.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
      low[e] = static_cast<uint8_t>(L[e] & 3);
    }
    pack_2bit(low, b.qs);
    store_block(b, dst, i);
  }
}

void quantize_q4_k(const float* src, uint8_t* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQKK;
    uint8_t L[kQKK];
    float scales[kQKK / 32], mins[kQKK / 32];
    fit_k4_subblocks(x, 15, -1.0f, 20, L, scales, mins);
    BlockQ4_K b;
    pack_k4_scales_and_requantize(x, 15, scales, mins, &b.d, &b.dmin, b.scales, L);
    for (int c = 0; c < kQKK / 64; ++c)
      for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    store_block(b, dst, i);
  }
}

void quantize_q5_k(const float* src, uint8_t* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQKK;
    uint8_t L[kQKK];
    float scales[kQKK / 32], mins[kQKK / 32];
    fit_k4_subblocks(x, 31, -0.5f, 15, L, scales, mins);
    BlockQ5_K b;
    pack_k4_scales_and_requantize(x, 31, scales, mins, &b.d, &b.dmin, b.scales, L);
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int c = 0; c < kQKK / 64; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int q0 = L[64 * c + l], q1 = L[64 * c + 32 + l];  // sub-blocks 2c and 2c+1
        b.qs[32 * c + l] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        b.qh[l] |= static_cast<uint8_t>(((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1)));
      }
    }
    store_block(b, dst, i);
  }
}

void quantize_q6_k(const float* src, uint8_t* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQKK;
    int8_t L[kQKK];
    float scales[kQKK / 16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int j = 0; j < kQKK / 16; ++j) {
      scales[j] = make_qx_quants(16, 32, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    BlockQ6_K b;
    std::memset(&b, 0, sizeof(b));
    if (max_abs_scale < kGroupMaxEps) {  // an all-zero super-block: all-zero bytes
      store_block(b, dst, i);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    b.d = fp32_to_fp16(1.0f / iscale);
    for (int j = 0; j < kQKK / 16; ++j) b.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = fp16_to_fp32(b.d) * b.scales[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {  // 128-element halves; see dequantize_q6_k for the order
      const int8_t* Lh = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        b.ql[64 * h + l] = static_cast<uint8_t>((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
        b.ql[64 * h + 32 + l] = static_cast<uint8_t>((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
        b.qh[32 * h + l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                                ((Lh[l + 96] >> 4) << 6));
      }
    }
    store_block(b, dst, i);
  }
}

}  // namespace fathom::quant

// Plain floating-point element types: F32, F16 (IEEE binary16), BF16 (bfloat16).
// Conversions are written out on the bit patterns so that they do not depend on the host's
// F16C/AVX512-BF16 support and so that rounding is exactly round-to-nearest-even.
#include <cstring>

#include "fathom/quant.h"
#include "quant/blocks.h"

namespace fathom {
namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000 | (mant << 13));  // Inf, NaN (payload kept)
  if (exp != 0) return bits_float(sign | ((exp + 127 - 15) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);  // +-0
  // Subnormal: mant * 2^-24. Shift the leading one up to bit 10 to make it a normal fp32.
  int e = 127 - 15 + 1;
  while ((mant & 0x400) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ff) << 13));
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffff;
  if (ax > 0x7f800000) return sign | 0x7e00 | static_cast<uint16_t>((ax & 0x7fffff) >> 13);  // quiet NaN
  if (ax >= 0x47800000) return sign | 0x7c00;  // >= 2^16 (or Inf): Inf
  if (ax >= 0x38800000) {
    // Normal binary16 range [2^-14, 2^16): rebias the exponent, keep 10 mantissa bits, round
    // the 13 dropped bits to nearest-even. A carry out of the mantissa correctly bumps the
    // exponent (up to Inf for values >= 65520).
    uint32_t h = ((ax >> 23) - 127 + 15) << 10 | ((ax & 0x7fffff) >> 13);
    const uint32_t rest = ax & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  if (ax <= 0x33000000) return sign;  // <= 2^-25: rounds to zero (2^-25 is a tie, 0 is even)
  // Subnormal binary16: value / 2^-24 rounded to nearest-even. value = m24 * 2^(e - 150).
  const uint32_t m24 = (ax & 0x7fffff) | 0x800000;
  const int shift = 126 - static_cast<int>(ax >> 23);  // 14..24
  uint32_t h = m24 >> shift;
  const uint32_t rest = m24 & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1))) ++h;  // h == 0x400 is the smallest normal: fine
  return sign | static_cast<uint16_t>(h);
}

float bf16_to_fp32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  // NaN: truncating could clear every payload bit and give Inf, so keep the top bits and set
  // the quiet bit (as ggml does).
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  // Round to nearest-even on the 16 dropped bits; overflow rounds to Inf as it should.
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

namespace quant {

void dequantize_f32(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void dequantize_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = fp16_to_fp32(h);
  }
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_fp32(h);
  }
}

void quantize_f32(const float* src, uint8_t* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void quantize_f16(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void quantize_bf16(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

}  // namespace quant
}  // namespace fathom

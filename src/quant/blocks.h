// Block structs of the ggml quantization formats and the per-type row kernels behind
// include/fathom/quant.h. Byte-by-byte layouts and the meaning of every field:
// docs/conventions.md. All multi-byte fields are little-endian (fathom only builds on
// little-endian hosts); fp16 fields are IEEE binary16 bit patterns.
//
// Kernels take whole blocks: `nb` blocks of the type, i.e. nb * block_elems floats. They read
// and write blocks through memcpy, so the byte pointers need no alignment.
#pragma once

#include <cstdint>
#include <cstring>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF blocks are little-endian; so must the host be");

namespace fathom::quant {

constexpr int kQK = 32;    // elements per legacy block (Q4_0 .. Q8_0)
constexpr int kQKK = 256;  // elements per K-quant super-block
constexpr int kKScaleBytes = 12;  // packed 6-bit scales + mins of Q4_K / Q5_K

// x = d * (q - 8), q in [0, 15]
struct BlockQ4_0 {
  uint16_t d;              // fp16 scale
  uint8_t qs[kQK / 2];     // byte j: element j in the low nibble, element j+16 in the high nibble
};
// x = d * q + m, q in [0, 15]
struct BlockQ4_1 {
  uint16_t d;              // fp16 scale
  uint16_t m;              // fp16 offset (the block minimum)
  uint8_t qs[kQK / 2];     // as Q4_0
};
// x = d * (q - 16), q in [0, 31]
struct BlockQ5_0 {
  uint16_t d;              // fp16 scale
  uint8_t qh[4];           // u32 LE: bit j = bit 4 of element j
  uint8_t qs[kQK / 2];     // low 4 bits, as Q4_0
};
// x = d * q + m, q in [0, 31]
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q, q in [-128, 127]
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};

// 16 sub-blocks of 16: x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), q in [0, 3]
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];  // low nibble: 4-bit scale, high nibble: 4-bit min
  uint8_t qs[kQKK / 4];       // 2-bit quants, see docs/conventions.md for the order
  uint16_t d;                 // fp16 super-block scale of the scales
  uint16_t dmin;              // fp16 super-block scale of the mins
};
// 16 sub-blocks of 16: x = d * (s - 32) * (q - 4), q in [0, 7] (low 2 bits in qs, bit 2 in hmask)
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];    // bit 2 of each quant; element i: byte i % 32, bit i / 32
  uint8_t qs[kQKK / 4];       // low 2 bits, same order as Q2_K
  uint8_t scales[12];         // 16 x 6-bit scales (offset by 32), packed
  uint16_t d;                 // fp16
};
// 8 sub-blocks of 32: x = d * sc[s] * q - dmin * m[s], q in [0, 15], sc/m 6-bit
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQKK / 2];       // 64-element chunks: byte l holds element l (low) and l+32 (high)
};
// as Q4_K with a fifth bit per quant, q in [0, 31]
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];       // element i of chunk c (64 elements): byte i % 32, bit 2c + (i >= 32)
  uint8_t qs[kQKK / 2];
};
// 16 sub-blocks of 16: x = d * scales[s] * (q - 32), q in [0, 63]
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];       // low 4 bits
  uint8_t qh[kQKK / 4];       // high 2 bits
  int8_t scales[kQKK / 16];   // signed 8-bit sub-block scales
  uint16_t d;                 // fp16
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34,
              "legacy block sizes must match ggml");
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210,
              "K-quant block sizes must match ggml");

// Rounds to the nearest integer, ties to even, for |v| <= 2^22 (all callers: quants and scales
// of at most a few hundred). Adding 1.5 * 2^23 makes the fp32 addition itself round v to an
// integer, which then sits in the low mantissa bits. ggml's quantizers round this way, so we must
// too to match bytes; it is also ~10x faster than std::nearbyint, a libm call on baseline x86-64.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;  // 1.5 * 2^23
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// ---- fp.cpp (plain types; "blocks" are single elements) ----
void dequantize_f32(const uint8_t* src, float* dst, int64_t n);
void dequantize_f16(const uint8_t* src, float* dst, int64_t n);
void dequantize_bf16(const uint8_t* src, float* dst, int64_t n);
void quantize_f32(const float* src, uint8_t* dst, int64_t n);
void quantize_f16(const float* src, uint8_t* dst, int64_t n);
void quantize_bf16(const float* src, uint8_t* dst, int64_t n);

// ---- q_legacy.cpp ----
void dequantize_q4_0(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q4_1(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_0(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_1(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q8_0(const uint8_t* src, float* dst, int64_t nb);
void quantize_q4_0(const float* src, uint8_t* dst, int64_t nb);
void quantize_q4_1(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_0(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_1(const float* src, uint8_t* dst, int64_t nb);
void quantize_q8_0(const float* src, uint8_t* dst, int64_t nb);

// ---- q_k.cpp ----
void dequantize_q2_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q3_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q4_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q6_k(const uint8_t* src, float* dst, int64_t nb);
void quantize_q2_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q3_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q4_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q6_k(const float* src, uint8_t* dst, int64_t nb);

}  // namespace fathom::quant

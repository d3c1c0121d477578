// Block quantization formats on the CPU: dequantize to fp32 and quantize from fp32.
// Bit-exact with ggml's reference implementations (checked against the `gguf` PyPI package).
// Block layouts: docs/conventions.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fathom/ggml_type.h"

namespace fathom {

// fp16 / bf16 scalar conversions (round-to-nearest-even; bf16 NaN stays NaN).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

// True for types with a CPU dequantizer (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K ...).
bool can_dequantize(GgmlType t);
// True for types with a CPU quantizer.
bool can_quantize(GgmlType t);

// Dequantizes `n` elements (a multiple of the block size) from `src` into `dst`.
// Throws fathom::Error for an unsupported type or a bad n.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);
// Quantizes `n` elements into `dst` (ggml_row_bytes(t, n) bytes). Optional importance weights
// (`imatrix`, n floats) may be nullptr. Throws for unsupported types.
void quantize_row(GgmlType t, const float* src, void* dst, int64_t n, const float* imatrix = nullptr);

// Dot product of a quantized row (n elements) with an fp32 vector, accumulated in fp32
// (dequantize-then-multiply, block by block; the CPU reference matmul uses this).
float dot_row(GgmlType t, const void* row, const float* x, int64_t n);

}  // namespace fathom

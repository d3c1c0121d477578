// The one dispatch point of the CPU quantization layer: GgmlType -> per-type row kernel.
#include <algorithm>

#include "fathom/error.h"
#include "fathom/quant.h"
#include "quant/blocks.h"

namespace fathom {
namespace {

using DequantizeFn = void (*)(const uint8_t* src, float* dst, int64_t n_blocks);
using QuantizeFn = void (*)(const float* src, uint8_t* dst, int64_t n_blocks);

struct Kernels {
  DequantizeFn dequantize = nullptr;
  QuantizeFn quantize = nullptr;
};

Kernels kernels_for(GgmlType t) {
  using namespace quant;
  switch (t) {
    case GgmlType::F32: return {dequantize_f32, quantize_f32};
    case GgmlType::F16: return {dequantize_f16, quantize_f16};
    case GgmlType::BF16: return {dequantize_bf16, quantize_bf16};
    case GgmlType::Q4_0: return {dequantize_q4_0, quantize_q4_0};
    case GgmlType::Q4_1: return {dequantize_q4_1, quantize_q4_1};
    case GgmlType::Q5_0: return {dequantize_q5_0, quantize_q5_0};
    case GgmlType::Q5_1: return {dequantize_q5_1, quantize_q5_1};
    case GgmlType::Q8_0: return {dequantize_q8_0, quantize_q8_0};
    case GgmlType::Q2_K: return {dequantize_q2_k, quantize_q2_k};
    case GgmlType::Q3_K: return {dequantize_q3_k, quantize_q3_k};
    case GgmlType::Q4_K: return {dequantize_q4_k, quantize_q4_k};
    case GgmlType::Q5_K: return {dequantize_q5_k, quantize_q5_k};
    case GgmlType::Q6_K: return {dequantize_q6_k, quantize_q6_k};
    default: return {};
  }
}

// Validates n against the type's block size; returns the number of blocks.
int64_t block_count(GgmlType t, int64_t n, const char* what) {
  const GgmlTypeTraits& tr = ggml_type_traits(t);
  FATHOM_CHECK(n >= 0 && n % tr.block_elems == 0, what, " of ", n, " elements: not a multiple of the ", tr.name,
               " block size ", tr.block_elems);
  return n / tr.block_elems;
}

}  // namespace

bool can_dequantize(GgmlType t) { return kernels_for(t).dequantize != nullptr; }
bool can_quantize(GgmlType t) { return kernels_for(t).quantize != nullptr; }

void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n) {
  const Kernels k = kernels_for(t);
  FATHOM_CHECK(k.dequantize != nullptr, "cannot dequantize tensor type ", ggml_type_name(t), " (id ",
               static_cast<uint32_t>(t), ") on the CPU: not supported by fathom");
  k.dequantize(static_cast<const uint8_t*>(src), dst, block_count(t, n, "dequantizing a row"));
}

void quantize_row(GgmlType t, const float* src, void* dst, int64_t n, const float* imatrix) {
  const Kernels k = kernels_for(t);
  FATHOM_CHECK(k.quantize != nullptr, "cannot quantize to tensor type ", ggml_type_name(t), " (id ",
               static_cast<uint32_t>(t), "): not supported by fathom");
  // ggml switches to different (weighted) search algorithms when given importance weights;
  // fathom implements only the unweighted reference ones, so refuse rather than ignore them.
  FATHOM_CHECK(imatrix == nullptr, "quantizing to ", ggml_type_name(t),
               " with importance weights (imatrix) is not supported by fathom");
  k.quantize(src, static_cast<uint8_t*>(dst), block_count(t, n, "quantizing a row"));
}

float dot_row(GgmlType t, const void* row, const float* x, int64_t n) {
  const Kernels k = kernels_for(t);
  FATHOM_CHECK(k.dequantize != nullptr, "cannot compute with tensor type ", ggml_type_name(t), " (id ",
               static_cast<uint32_t>(t), ") on the CPU: not supported by fathom");
  const GgmlTypeTraits& tr = ggml_type_traits(t);
  const int64_t nb = block_count(t, n, "dot product of a row");
  // Dequantize a few blocks at a time into a small buffer (256 elements: one K-quant block, 8
  // legacy blocks, 256 plain elements), then multiply-accumulate in fp32 in element order.
  constexpr int64_t kChunk = 256;
  const int64_t blocks_per_chunk = kChunk / tr.block_elems;
  const uint8_t* src = static_cast<const uint8_t*>(row);
  float buf[kChunk];
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; b += blocks_per_chunk) {
    const int64_t nblk = std::min(blocks_per_chunk, nb - b);
    k.dequantize(src + b * tr.block_bytes, buf, nblk);
    const float* xs = x + b * tr.block_elems;
    for (int64_t i = 0; i < nblk * tr.block_elems; ++i) sum += buf[i] * xs[i];
  }
  return sum;
}

}  // namespace fathom

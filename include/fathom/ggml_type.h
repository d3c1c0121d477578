// Tensor element types as numbered in the GGUF file format (ggml's `ggml_type`).
// Block layouts of each supported type: docs/conventions.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fathom {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  // 4 and 5 were Q4_2/Q4_3, removed from the format.
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

struct GgmlTypeTraits {
  const char* name;      // "Q4_K"
  int64_t block_elems;   // elements per block (1 for plain types)
  size_t block_bytes;    // bytes per block
};

// True when `raw` names a type whose block size fathom knows (the file reader accepts it).
bool ggml_type_known(uint32_t raw);
// Traits of a known type; throws fathom::Error for an unknown one.
const GgmlTypeTraits& ggml_type_traits(GgmlType t);
const char* ggml_type_name(GgmlType t);
// Parses "q4_k" / "Q4_K" / "f16" ...; throws fathom::Error naming the string when unknown.
GgmlType ggml_type_from_name(const std::string& name);
// Bytes of a row of `n` elements; throws when n is not a multiple of the block size.
size_t ggml_row_bytes(GgmlType t, int64_t n);

}  // namespace fathom

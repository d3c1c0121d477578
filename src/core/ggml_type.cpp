#include "fathom/ggml_type.h"

#include <algorithm>
#include <cctype>

#include "fathom/error.h"

namespace fathom {
namespace {

struct Entry {
  uint32_t id;
  GgmlTypeTraits traits;
};

// Block sizes as defined by ggml (ggml-common.h). Known here = readable from a file; which of
// them fathom can compute with is decided by the quant layer.
constexpr Entry kTypes[] = {
    {0, {"F32", 1, 4}},         {1, {"F16", 1, 2}},         {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},      {6, {"Q5_0", 32, 22}},      {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},      {9, {"Q8_1", 32, 36}},      {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}},   {12, {"Q4_K", 256, 144}},   {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},   {15, {"Q8_K", 256, 292}},   {16, {"IQ2_XXS", 256, 66}},
    {17, {"IQ2_XS", 256, 74}},  {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}},
    {20, {"IQ4_NL", 32, 18}},   {21, {"IQ3_S", 256, 110}},  {22, {"IQ2_S", 256, 82}},
    {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},         {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},        {27, {"I64", 1, 8}},        {28, {"F64", 1, 8}},
    {29, {"IQ1_M", 256, 56}},   {30, {"BF16", 1, 2}},       {34, {"TQ1_0", 256, 54}},
    {35, {"TQ2_0", 256, 66}},
};

const Entry* find_entry(uint32_t raw) {
  for (const auto& e : kTypes)
    if (e.id == raw) return &e;
  return nullptr;
}

}  // namespace

bool ggml_type_known(uint32_t raw) { return find_entry(raw) != nullptr; }

const GgmlTypeTraits& ggml_type_traits(GgmlType t) {
  const Entry* e = find_entry(static_cast<uint32_t>(t));
  FATHOM_CHECK(e != nullptr, "unknown tensor type id ", static_cast<uint32_t>(t));
  return e->traits;
}

const char* ggml_type_name(GgmlType t) {
  const Entry* e = find_entry(static_cast<uint32_t>(t));
  return e ? e->traits.name : "UNKNOWN";
}

GgmlType ggml_type_from_name(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& e : kTypes)
    if (up == e.traits.name) return static_cast<GgmlType>(e.id);
  fail("unknown tensor type '", name, "'");
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
  const auto& tr = ggml_type_traits(t);
  FATHOM_CHECK(n >= 0 && n % tr.block_elems == 0, "a row of ", n, " elements is not a multiple of the ",
               tr.name, " block size ", tr.block_elems);
  return static_cast<size_t>(n / tr.block_elems) * tr.block_bytes;
}

}  // namespace fathom

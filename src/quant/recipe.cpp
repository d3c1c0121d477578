// Quantization recipes; the rules are described in src/quant/recipe.h.
#include "quant/recipe.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "fathom/error.h"

namespace fathom {
namespace {

// general.file_type values (llama.cpp's llama_ftype). A plain K type has no ftype of its own in
// llama.cpp; the "_S" (small) variant is the nearest.
constexpr uint32_t kFtypeAllF32 = 0, kFtypeF16 = 1, kFtypeQ4_0 = 2, kFtypeQ4_1 = 3, kFtypeQ8_0 = 7, kFtypeQ5_0 = 8,
                   kFtypeQ5_1 = 9, kFtypeQ4_K_S = 14, kFtypeQ4_K_M = 15, kFtypeQ5_K_S = 16, kFtypeQ5_K_M = 17,
                   kFtypeQ6_K = 18, kFtypeBF16 = 32;

const QuantRecipe kRecipes[] = {
    {"Q4_K_M", GgmlType::Q4_K, true, kFtypeQ4_K_M}, {"Q5_K_M", GgmlType::Q5_K, true, kFtypeQ5_K_M},
    {"Q8_0", GgmlType::Q8_0, false, kFtypeQ8_0},     {"Q4_0", GgmlType::Q4_0, false, kFtypeQ4_0},
    {"Q4_1", GgmlType::Q4_1, false, kFtypeQ4_1},     {"Q5_0", GgmlType::Q5_0, false, kFtypeQ5_0},
    {"Q5_1", GgmlType::Q5_1, false, kFtypeQ5_1},     {"Q4_K", GgmlType::Q4_K, false, kFtypeQ4_K_S},
    {"Q5_K", GgmlType::Q5_K, false, kFtypeQ5_K_S},   {"Q6_K", GgmlType::Q6_K, false, kFtypeQ6_K},
    {"F16", GgmlType::F16, false, kFtypeF16},        {"BF16", GgmlType::BF16, false, kFtypeBF16},
    {"F32", GgmlType::F32, false, kFtypeAllF32},
};

// Every llama_ftype value a GGUF's general.file_type may hold, for display.
struct FtypeName {
  uint32_t value;
  const char* name;
};
constexpr FtypeName kFtypeNames[] = {
    {kFtypeAllF32, "F32"},    {kFtypeF16, "F16"},       {kFtypeQ4_0, "Q4_0"},     {kFtypeQ4_1, "Q4_1"},
    {kFtypeQ8_0, "Q8_0"},     {kFtypeQ5_0, "Q5_0"},     {kFtypeQ5_1, "Q5_1"},     {10, "Q2_K"},
    {11, "Q3_K_S"},           {12, "Q3_K_M"},           {13, "Q3_K_L"},           {kFtypeQ4_K_S, "Q4_K_S"},
    {kFtypeQ4_K_M, "Q4_K_M"}, {kFtypeQ5_K_S, "Q5_K_S"}, {kFtypeQ5_K_M, "Q5_K_M"}, {kFtypeQ6_K, "Q6_K"},
    {kFtypeBF16, "BF16"},
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// "blk.12.ffn_down.weight" -> 12; -1 when the name has no layer index.
int layer_index(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  char* end = nullptr;
  const long v = std::strtol(name.c_str() + 4, &end, 10);
  return (end != name.c_str() + 4 && *end == '.') ? static_cast<int>(v) : -1;
}

// Whether the recipe touches this tensor at all (llama.cpp's selection in llama_model_quantize).
bool is_weight_matrix(const std::string& name, uint32_t n_dims) {
  if (n_dims < 2 || !ends_with(name, "weight")) return false;
  for (const char* keep : {"_norm.weight", "ffn_gate_inp.weight", "pos_embd", "token_types", "ssm_conv1d",
                           "attn_rel_b"})
    if (contains(name, keep)) return false;
  return true;
}

// A K-quant needs 256-element rows; fall back like llama.cpp, then to F16.
GgmlType fit_row_length(GgmlType t, int64_t cols) {
  if (cols % ggml_type_traits(t).block_elems == 0) return t;
  switch (t) {
    case GgmlType::Q4_K: t = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: t = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: t = GgmlType::Q8_0; break;
    default: t = GgmlType::F16; break;
  }
  return cols % ggml_type_traits(t).block_elems == 0 ? t : GgmlType::F16;
}

}  // namespace

QuantRecipe quant_recipe(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& r : kRecipes)
    if (up == r.name) return r;
  std::string known;
  for (const auto& r : kRecipes) known += (known.empty() ? "" : " ") + r.name;
  fail("unknown quantization type '", name, "'; known: ", known);
}

std::vector<std::string> quant_recipe_names() {
  std::vector<std::string> out;
  for (const auto& r : kRecipes) out.push_back(r.name);
  return out;
}

QuantModelInfo quant_model_info(const std::vector<std::string>& tensor_names) {
  QuantModelInfo info;
  for (const auto& n : tensor_names) {
    info.has_output |= (n == "output.weight");
    info.n_attn_v += contains(n, "attn_v.weight");
    info.n_ffn_down += contains(n, "ffn_down");
  }
  return info;
}

bool quant_use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

GgmlType quant_recipe_tensor_type(const QuantRecipe& recipe, const QuantModelInfo& model, const std::string& name,
                                  const int64_t* ne, uint32_t n_dims, GgmlType src) {
  if (!is_weight_matrix(name, n_dims)) return src;
  GgmlType t = recipe.base;
  if (recipe.mixed) {
    const GgmlType more = GgmlType::Q6_K;
    if (name == "output.weight" || (!model.has_output && name == "token_embd.weight")) {
      t = more;
    } else if (contains(name, "attn_v.weight")) {
      if (quant_use_more_bits(layer_index(name), model.n_attn_v)) t = more;
    } else if (contains(name, "ffn_down")) {
      if (quant_use_more_bits(layer_index(name), model.n_ffn_down)) t = more;
    } else if (contains(name, "attn_qkv.weight")) {
      t = recipe.base == GgmlType::Q4_K ? GgmlType::Q5_K : GgmlType::Q6_K;
    }
  }
  return fit_row_length(t, ne[0]);
}

std::string file_type_name(int64_t file_type) {
  for (const auto& f : kFtypeNames)
    if (int64_t(f.value) == file_type) return f.name;
  return "file_type " + std::to_string(file_type);
}

}  // namespace fathom

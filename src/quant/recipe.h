// Quantization recipes of `fathom quantize`: which type each tensor of a model gets.
//
// A plain type (Q8_0, Q4_K, F16, ...) gives that type to every weight matrix; the mixed recipes
// Q4_K_M / Q5_K_M follow llama.cpp's llama-quantize so that our files look like theirs:
//   - tensors that are not weight matrices keep their type and bytes: 1-D tensors (norms, biases),
//     names not ending in "weight", MoE routers (ffn_gate_inp), position/token-type embeddings;
//   - output.weight (or token_embd.weight when the model ties it to the output) gets Q6_K;
//   - attn_v.weight and ffn_down.weight get Q6_K in the layers `use_more_bits` picks (the first
//     and last eighth and every third layer in between), the base type (Q4_K / Q5_K) elsewhere;
//   - a fused attn_qkv.weight gets one step more (Q5_K / Q6_K);
//   - every other weight matrix gets the base type.
// A K-quant needs rows (ne[0]) that are a multiple of 256; other matrices fall back to a 32-block
// type as llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and to F16 when the row is not
// a multiple of 32 either.
// Not implemented (llama.cpp special cases): the MoE / 70B / Falcon adjustments, imatrix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fathom/ggml_type.h"

namespace fathom {

struct QuantRecipe {
  std::string name;      // "Q4_K_M", "Q8_0", ...
  GgmlType base;         // type of an ordinary weight matrix
  bool mixed = false;    // the llama.cpp *_M rules apply
  uint32_t file_type;    // value for general.file_type (llama.cpp's llama_ftype)
};

// The recipe called `name` (case-insensitive); throws fathom::Error listing the known ones.
QuantRecipe quant_recipe(const std::string& name);
// Names accepted by quant_recipe(), for help texts.
std::vector<std::string> quant_recipe_names();
// The llama_ftype name of a general.file_type value (15 -> "Q4_K_M"), as llama-bench prints it;
// "file_type N" for a value it does not know.
std::string file_type_name(int64_t file_type);

// What quant_recipe_tensor_type needs to know about the whole model.
struct QuantModelInfo {
  bool has_output = false;   // an output.weight tensor exists (else token_embd is tied to it)
  int n_attn_v = 0;          // number of attn_v.weight tensors
  int n_ffn_down = 0;        // number of ffn_down tensors
};
QuantModelInfo quant_model_info(const std::vector<std::string>& tensor_names);

// llama.cpp's use_more_bits: true for the first and last eighth of the layers and every third
// layer in between.
bool quant_use_more_bits(int i_layer, int n_layers);

// The type tensor `name` (GGUF ne[0..n_dims-1], of type `src`) gets under `recipe`. Returns
// `src` for tensors the recipe leaves alone.
GgmlType quant_recipe_tensor_type(const QuantRecipe& recipe, const QuantModelInfo& model, const std::string& name,
                                  const int64_t* ne, uint32_t n_dims, GgmlType src);

}  // namespace fathom

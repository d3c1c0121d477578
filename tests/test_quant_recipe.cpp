// Quantization recipes of `fathom quantize` (src/quant/recipe.h): the per-tensor type rules that
// make our Q4_K_M / Q5_K_M files look like llama.cpp's. The end-to-end check that re-quantizing
// llama.cpp's own Gemma 3 270M Q4_K_M reproduces it byte for byte is the ctest
// quantize_cli_real_model (tests/python/check_quantize_cli.py).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fathom/error.h"
#include "quant/recipe.h"

using namespace fathom;

namespace {

GgmlType type_of(const QuantRecipe& r, const QuantModelInfo& m, const std::string& name, std::vector<int64_t> ne,
                 GgmlType src = GgmlType::F32) {
  return quant_recipe_tensor_type(r, m, name, ne.data(), static_cast<uint32_t>(ne.size()), src);
}

}  // namespace

TEST(QuantRecipe, UseMoreBitsMatchesLlamaCppFor18Layers) {
  // n/8 = 2, 7n/8 = 15: layers 0-1, 15-17, and (i - 2) % 3 == 2: 4, 7, 10, 13, 16.
  std::vector<int> picked;
  for (int i = 0; i < 18; ++i)
    if (quant_use_more_bits(i, 18)) picked.push_back(i);
  EXPECT_EQ(picked, (std::vector<int>{0, 1, 4, 7, 10, 13, 15, 16, 17}));
}

TEST(QuantRecipe, NamesAreCaseInsensitiveAndUnknownOnesListTheKnown) {
  EXPECT_EQ(quant_recipe("q4_k_m").name, "Q4_K_M");
  EXPECT_EQ(quant_recipe("Q4_K_M").file_type, 15u);
  EXPECT_EQ(quant_recipe("q8_0").base, GgmlType::Q8_0);
  try {
    quant_recipe("Q3_X");
    FAIL() << "no exception";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Q3_X"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Q5_K_M"), std::string::npos) << msg;
  }
}

TEST(QuantRecipe, Q4KMixedRules) {
  const QuantRecipe r = quant_recipe("Q4_K_M");
  std::vector<std::string> names = {"token_embd.weight", "output.weight", "output_norm.weight"};
  for (int i = 0; i < 8; ++i) {
    names.push_back("blk." + std::to_string(i) + ".attn_v.weight");
    names.push_back("blk." + std::to_string(i) + ".ffn_down.weight");
  }
  const QuantModelInfo m = quant_model_info(names);
  EXPECT_TRUE(m.has_output);
  EXPECT_EQ(m.n_attn_v, 8);
  EXPECT_EQ(type_of(r, m, "output.weight", {4096, 1000}), GgmlType::Q6_K);
  EXPECT_EQ(type_of(r, m, "token_embd.weight", {4096, 1000}), GgmlType::Q4_K);  // not tied
  EXPECT_EQ(type_of(r, m, "output_norm.weight", {4096}), GgmlType::F32);        // 1-D: untouched
  EXPECT_EQ(type_of(r, m, "output_norm.weight", {4096}, GgmlType::F16), GgmlType::F16);
  // 8 layers: n/8 = 1, 7n/8 = 7, (i - 1) % 3 == 2: layers 0, 3, 6, 7.
  for (int i = 0; i < 8; ++i) {
    const bool more = i == 0 || i == 3 || i == 6 || i == 7;
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(type_of(r, m, b + "attn_v.weight", {4096, 1024}), more ? GgmlType::Q6_K : GgmlType::Q4_K) << i;
    EXPECT_EQ(type_of(r, m, b + "ffn_down.weight", {14336, 4096}), more ? GgmlType::Q6_K : GgmlType::Q4_K) << i;
    EXPECT_EQ(type_of(r, m, b + "ffn_up.weight", {4096, 14336}), GgmlType::Q4_K) << i;
    EXPECT_EQ(type_of(r, m, b + "attn_q_norm.weight", {128, 1}), GgmlType::F32) << "norms are never quantized";
  }
  EXPECT_EQ(type_of(r, m, "blk.0.attn_qkv.weight", {4096, 12288}), GgmlType::Q5_K);
  EXPECT_EQ(type_of(quant_recipe("Q5_K_M"), m, "blk.0.attn_qkv.weight", {4096, 12288}), GgmlType::Q6_K);
  EXPECT_EQ(type_of(quant_recipe("Q5_K_M"), m, "blk.1.ffn_down.weight", {14336, 4096}), GgmlType::Q5_K);
}

TEST(QuantRecipe, TiedEmbeddingsGetTheOutputType) {
  const QuantModelInfo m = quant_model_info({"token_embd.weight", "blk.0.attn_v.weight"});
  EXPECT_FALSE(m.has_output);
  EXPECT_EQ(type_of(quant_recipe("Q4_K_M"), m, "token_embd.weight", {2048, 1000}), GgmlType::Q6_K);
  EXPECT_EQ(type_of(quant_recipe("Q4_K"), m, "token_embd.weight", {2048, 1000}), GgmlType::Q4_K);  // plain: uniform
}

// Rows that are not a multiple of 256 (Gemma 3 270M: 640) fall back like llama.cpp.
TEST(QuantRecipe, RowLengthFallbacks) {
  const QuantModelInfo m = quant_model_info({"token_embd.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight"});
  const QuantRecipe q4km = quant_recipe("Q4_K_M");
  EXPECT_EQ(type_of(q4km, m, "blk.0.attn_q.weight", {640, 1024}), GgmlType::Q5_0);    // Q4_K -> Q5_0
  EXPECT_EQ(type_of(q4km, m, "blk.0.attn_v.weight", {640, 256}), GgmlType::Q8_0);     // Q6_K -> Q8_0
  EXPECT_EQ(type_of(q4km, m, "token_embd.weight", {640, 262144}), GgmlType::Q8_0);    // Q6_K -> Q8_0
  EXPECT_EQ(type_of(q4km, m, "blk.0.ffn_down.weight", {2048, 640}), GgmlType::Q6_K);  // 2048 fits
  EXPECT_EQ(type_of(quant_recipe("Q5_K"), m, "blk.0.attn_q.weight", {640, 1024}), GgmlType::Q5_1);
  EXPECT_EQ(type_of(q4km, m, "blk.0.attn_q.weight", {100, 64}), GgmlType::F16);  // not even 32
  EXPECT_EQ(type_of(quant_recipe("Q8_0"), m, "blk.0.attn_q.weight", {100, 64}), GgmlType::F16);
  EXPECT_EQ(type_of(quant_recipe("BF16"), m, "blk.0.attn_q.weight", {100, 64}), GgmlType::BF16);
}

TEST(QuantRecipe, TensorsLeftAlone) {
  const QuantModelInfo m = quant_model_info({"output.weight"});
  const QuantRecipe r = quant_recipe("Q4_0");
  EXPECT_EQ(type_of(r, m, "blk.0.ffn_gate_inp.weight", {4096, 8}), GgmlType::F32);  // MoE router
  EXPECT_EQ(type_of(r, m, "blk.0.attn_q.bias", {4096, 4}), GgmlType::F32);          // not a weight
  EXPECT_EQ(type_of(r, m, "rope_freqs.weight", {64}), GgmlType::F32);               // 1-D
  EXPECT_EQ(type_of(r, m, "blk.0.attn_q.weight", {4096, 4096}, GgmlType::Q6_K), GgmlType::Q4_0);
}

// read_config / load_model: hyperparameters of each architecture and one clear error for a bad file.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/model.h"

namespace fathom {
namespace {

const std::string k_golden_dir = std::string(FATHOM_SOURCE_DIR) + "/tests/golden/";

// A copy of a committed tiny model with its metadata/tensors edited, parsed from memory.
struct EditedModel {
  std::vector<uint8_t> bytes;
  std::unique_ptr<GgufFile> file;
};
EditedModel edit(const std::string& name,
                 const std::function<bool(const std::string&, GgufValue&)>& edit_kv,
                 const std::function<bool(GgufTensorInfo&)>& edit_tensor) {
  auto src = GgufFile::open(k_golden_dir + name);
  GgufWriter w;
  for (const auto& kv : src->metadata()) {
    GgufValue v = kv.second;
    if (edit_kv(kv.first, v)) w.set(kv.first, v);
  }
  for (const GgufTensorInfo& t : src->tensors()) {
    GgufTensorInfo info = t;
    if (!edit_tensor(info)) continue;
    std::vector<int64_t> ne(info.ne, info.ne + std::max<uint32_t>(info.n_dims, 1));
    w.add_tensor(info.name, info.type, ne, t.data, info.nbytes);
  }
  EditedModel m;
  m.bytes = w.to_bytes();
  m.file = GgufFile::from_memory(m.bytes.data(), m.bytes.size(), name + " (edited)");
  return m;
}
const auto keep_kv = [](const std::string&, GgufValue&) { return true; };
const auto keep_tensor = [](GgufTensorInfo&) { return true; };

std::string load_error(EditedModel m) {
  try {
    load_model(std::move(m.file));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CpuLoader, ConfigOfEachTinyModel) {
  auto llama = load_model(k_golden_dir + "tiny-llama.gguf");
  const ModelConfig& l = llama->config;
  EXPECT_EQ(l.arch, Arch::LLAMA);
  EXPECT_STREQ(arch_name(l.arch), "llama");
  EXPECT_EQ(l.rope_type, RopeType::NORM);
  EXPECT_EQ(l.n_vocab, 128);
  EXPECT_EQ(l.n_head_kv, 2);
  EXPECT_EQ(l.rope_freq_factors.size(), 4u);  // from the rope_freqs tensor
  EXPECT_FALSE(l.tied_embeddings);
  EXPECT_TRUE(llama->weights.rope_freqs);

  auto qwen2 = load_model(k_golden_dir + "tiny-qwen2.gguf");
  EXPECT_EQ(qwen2->config.rope_type, RopeType::NEOX);
  EXPECT_TRUE(qwen2->config.has_qkv_bias);
  EXPECT_TRUE(qwen2->config.tied_embeddings);
  EXPECT_EQ(qwen2->weights.output.info, qwen2->weights.tok_embd.info);
  EXPECT_EQ(qwen2->config.rope_scaling_type, "linear");
  EXPECT_FLOAT_EQ(qwen2->config.rope_freq_scale, 0.5f);

  auto qwen3 = load_model(k_golden_dir + "tiny-qwen3.gguf");
  EXPECT_TRUE(qwen3->config.has_qk_norm);
  EXPECT_EQ(qwen3->config.head_dim_k, 16);  // != n_embd / n_head
  EXPECT_EQ(qwen3->config.q_dim(), 64);
}

// Without a rope_freqs tensor, llama3 scaling metadata gives the same factors the converter wrote.
TEST(CpuLoader, Llama3FactorsFromMetadataEqualTheTensor) {
  auto with_tensor = load_model(k_golden_dir + "tiny-llama.gguf");
  EditedModel m = edit(
      "tiny-llama.gguf", keep_kv, [](GgufTensorInfo& t) { return t.name != "rope_freqs.weight"; });
  // tools/make_goldens.py: factor 4, low 1, high 4, original context 64.
  GgufWriter w;
  for (const auto& kv : m.file->metadata()) w.set(kv.first, kv.second);
  w.set("llama.rope.scaling.type", GgufValue::make_string("llama3"));
  w.set("llama.rope.scaling.factor", GgufValue::make_f32(4.0f));
  w.set("llama.rope.scaling.low_freq_factor", GgufValue::make_f32(1.0f));
  w.set("llama.rope.scaling.high_freq_factor", GgufValue::make_f32(4.0f));
  w.set("llama.rope.scaling.original_context_length", GgufValue::make_u32(64));
  for (const GgufTensorInfo& t : m.file->tensors()) {
    std::vector<int64_t> ne(t.ne, t.ne + std::max<uint32_t>(t.n_dims, 1));
    w.add_tensor(t.name, t.type, ne, t.data, t.nbytes);
  }
  const std::vector<uint8_t> bytes = w.to_bytes();
  auto from_meta = load_model(GgufFile::from_memory(bytes.data(), bytes.size(), "llama3 metadata"));
  const ModelConfig& c = from_meta->config;
  EXPECT_FALSE(from_meta->weights.rope_freqs);
  EXPECT_FLOAT_EQ(c.rope_freq_scale, 1.0f);  // llama3 scaling lives in the factors only
  ASSERT_EQ(c.rope_freq_factors.size(), with_tensor->config.rope_freq_factors.size());
  for (size_t i = 0; i < c.rope_freq_factors.size(); ++i) {
    EXPECT_NEAR(c.rope_freq_factors[i], with_tensor->config.rope_freq_factors[i], 1e-6) << "i=" << i;
  }
}

TEST(CpuLoader, UnsupportedArchitectureIsNamed) {
  const std::string msg = load_error(edit(
      "tiny-llama.gguf",
      [](const std::string& k, GgufValue& v) {
        if (k == "general.architecture") v = GgufValue::make_string("mamba");
        return true;
      },
      keep_tensor));
  EXPECT_NE(msg.find("unsupported architecture 'mamba'"), std::string::npos) << msg;
}

TEST(CpuLoader, MissingTensorIsNamed) {
  const std::string msg = load_error(edit("tiny-llama.gguf", keep_kv, [](GgufTensorInfo& t) {
    return t.name != "blk.1.ffn_up.weight";
  }));
  EXPECT_NE(msg.find("'blk.1.ffn_up.weight' is missing"), std::string::npos) << msg;
}

TEST(CpuLoader, MissingHyperparameterIsNamed) {
  const std::string msg = load_error(edit(
      "tiny-qwen3.gguf", [](const std::string& k, GgufValue&) { return k != "qwen3.block_count"; },
      keep_tensor));
  EXPECT_NE(msg.find("'qwen3.block_count' is missing"), std::string::npos) << msg;
}

TEST(CpuLoader, ShapeDisagreeingWithHyperparametersIsNamed) {
  // Claim 8 heads of 8 where the file has 4: attn_q no longer has n_head * head_dim rows.
  const std::string msg = load_error(edit(
      "tiny-llama.gguf",
      [](const std::string& k, GgufValue& v) {
        if (k == "llama.attention.head_count") v = GgufValue::make_u32(8);
        return true;
      },
      keep_tensor));
  EXPECT_NE(msg.find("tensor 'blk.0.attn_q.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has shape [32, 32]"), std::string::npos) << msg;
}

TEST(CpuLoader, GqaRatioMustDivide) {
  const std::string msg = load_error(edit(
      "tiny-llama.gguf",
      [](const std::string& k, GgufValue& v) {
        if (k == "llama.attention.head_count_kv") v = GgufValue::make_u32(3);
        return true;
      },
      keep_tensor));
  EXPECT_NE(msg.find("not a multiple of head_count_kv 3"), std::string::npos) << msg;
}

TEST(CpuLoader, GemmaWithoutSandwichNormFails) {
  const std::string msg = load_error(edit("tiny-gemma3.gguf", keep_kv, [](GgufTensorInfo& t) {
    return t.name != "blk.3.post_ffw_norm.weight";
  }));
  EXPECT_NE(msg.find("'blk.3.post_ffw_norm.weight' is missing"), std::string::npos) << msg;
}

}  // namespace
}  // namespace fathom

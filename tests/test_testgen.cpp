// The test-model generator (src/model/testgen.cpp): deterministic bytes, a file GgufFile reads back
// and GgufWriter reproduces byte for byte, metadata that matches the named shape, weights with the
// intended statistics, and models the loader accepts.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>
#include <unistd.h>

#include "fathom/cpu_model.h"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/model.h"
#include "fathom/quant.h"
#include "fathom/testgen.h"
#include "fathom/tokenizer.h"

namespace fathom {
namespace {

const std::vector<std::string> kTinyShapes = {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3"};

// A path unique to this test and process (ctest runs tests in parallel processes).
std::string temp_path(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name() + "_" + tag;
  for (auto& c : name)
    if (c == '/' || c == ' ') c = '_';
  return ::testing::TempDir() + "fathom_testgen_" + std::to_string(::getpid()) + "_" + name + ".gguf";
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes a model to a temp file that is deleted when the object goes away.
struct TempModel {
  std::string path;
  TempModel(const TestModelSpec& spec, const std::string& tag) : path(temp_path(tag)) { write_test_model(spec, path); }
  ~TempModel() { std::remove(path.c_str()); }
};

TEST(TestGen, SameSeedSameBytesOtherSeedOtherBytes) {
  const TestModelSpec spec{"tiny-llama", "Q4_K", 7};
  TempModel a(spec, "a"), b(spec, "b"), c(TestModelSpec{"tiny-llama", "Q4_K", 8}, "c");
  const auto ba = read_bytes(a.path), bb = read_bytes(b.path), bc = read_bytes(c.path);
  ASSERT_GT(ba.size(), 1000u);
  EXPECT_TRUE(ba == bb) << "two runs with seed 7 differ";
  ASSERT_EQ(ba.size(), bc.size());  // same shape and type: same layout
  EXPECT_FALSE(ba == bc) << "seeds 7 and 8 gave identical files";
}

// Reading the file and re-serialising everything with GgufWriter gives the same bytes: the streamed
// layout is exactly the library writer's (and so ggml's).
class TestGenShapes : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TestGenShapes, ReadsBackAndMatchesGgufWriterBytes) {
  const auto& [shape_name, type] = GetParam();
  const TestModelSpec spec{shape_name, type, 3};
  TempModel m(spec, "rt");
  const auto bytes = read_bytes(m.path);
  auto f = GgufFile::open(m.path);
  EXPECT_EQ(f->version(), 3u);

  GgufWriter w;
  for (const auto& [key, value] : f->metadata()) w.set(key, value);
  for (const auto& t : f->tensors()) {
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    w.add_tensor_ref(t.name, t.type, ne, t.data, t.nbytes);
  }
  const auto again = w.to_bytes();
  ASSERT_EQ(again.size(), bytes.size());
  size_t first_diff = bytes.size();
  for (size_t i = 0; i < bytes.size() && first_diff == bytes.size(); ++i)
    if (bytes[i] != again[i]) first_diff = i;
  EXPECT_EQ(first_diff, bytes.size()) << "first differing byte at offset " << first_diff;
}

TEST_P(TestGenShapes, MetadataMatchesShape) {
  const auto& [shape_name, type] = GetParam();
  const TestModelShape s = test_model_shape(shape_name);
  TempModel m(TestModelSpec{shape_name, type, 3}, "md");
  auto f = GgufFile::open(m.path);
  const std::string a = s.arch + ".";
  EXPECT_EQ(f->get_string("general.architecture", ""), s.arch);
  EXPECT_EQ(f->get_int(a + "embedding_length", -1), s.n_embd);
  EXPECT_EQ(f->get_int(a + "block_count", -1), s.n_layer);
  EXPECT_EQ(f->get_int(a + "feed_forward_length", -1), s.n_ff);
  EXPECT_EQ(f->get_int(a + "attention.head_count", -1), s.n_head);
  EXPECT_EQ(f->get_int(a + "attention.head_count_kv", -1), s.n_head_kv);
  EXPECT_EQ(f->get_int(a + "attention.key_length", -1), s.head_dim);
  EXPECT_EQ(f->get_int(a + "attention.value_length", -1), s.head_dim);
  EXPECT_EQ(f->get_int(a + "context_length", -1), s.n_ctx);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float(a + "attention.layer_norm_rms_epsilon", -1)), s.norm_eps);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float(a + "rope.freq_base", -1)), s.rope_base);
  EXPECT_EQ(f->get_int(a + "attention.sliding_window", 0), s.sliding_window);

  // Tokenizer: n_vocab tokens, parallel arrays, special ids in range, all 256 byte tokens.
  const auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), s.n_vocab);
  EXPECT_EQ(f->get_f32_array("tokenizer.ggml.scores").size(), tokens.size());
  EXPECT_EQ(f->get_i32_array("tokenizer.ggml.token_type").size(), tokens.size());
  EXPECT_EQ(f->get_string("tokenizer.ggml.model", ""), "llama");
  EXPECT_LT(f->get_int("tokenizer.ggml.bos_token_id", -1), s.n_vocab);
  EXPECT_LT(f->get_int("tokenizer.ggml.eos_token_id", -1), s.n_vocab);
  int n_byte_tokens = 0;
  for (const auto& t : tokens) n_byte_tokens += t.size() == 6 && t.rfind("<0x", 0) == 0;
  EXPECT_EQ(n_byte_tokens, 256);

  // Tensors: the embedding is (n_vocab, n_embd); output.weight exists iff untied.
  const GgufTensorInfo* embd = f->find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->cols(), s.n_embd);
  EXPECT_EQ(embd->rows(), s.n_vocab);
  EXPECT_EQ(f->find_tensor("output.weight") == nullptr, s.tied_embeddings);
  EXPECT_EQ(f->find_tensor("blk.0.attn_q.bias") != nullptr, s.qkv_bias);
  EXPECT_EQ(f->find_tensor("blk.0.attn_q_norm.weight") != nullptr, s.qk_norm);
  EXPECT_EQ(f->find_tensor("blk.0.post_ffw_norm.weight") != nullptr, s.post_norms);
  const GgufTensorInfo* wo = f->find_tensor("blk." + std::to_string(s.n_layer - 1) + ".attn_output.weight");
  ASSERT_NE(wo, nullptr);
  EXPECT_EQ(wo->cols(), s.n_head * s.head_dim);
  EXPECT_EQ(wo->rows(), s.n_embd);
}

TEST_P(TestGenShapes, LoaderAcceptsIt) {
  const auto& [shape_name, type] = GetParam();
  const TestModelShape s = test_model_shape(shape_name);
  TempModel m(TestModelSpec{shape_name, type, 3}, "load");
  std::unique_ptr<Model> model = load_model(m.path);
  const ModelConfig& c = model->config;
  EXPECT_EQ(c.arch_str, s.arch);
  EXPECT_EQ(c.n_vocab, s.n_vocab);
  EXPECT_EQ(c.n_embd, s.n_embd);
  EXPECT_EQ(c.n_layer, s.n_layer);
  EXPECT_EQ(c.n_ff, s.n_ff);
  EXPECT_EQ(c.n_head, s.n_head);
  EXPECT_EQ(c.n_head_kv, s.n_head_kv);
  EXPECT_EQ(c.head_dim_k, s.head_dim);
  EXPECT_EQ(c.tied_embeddings, s.tied_embeddings);
  EXPECT_EQ(c.has_qkv_bias, s.qkv_bias);
  EXPECT_EQ(c.has_qk_norm, s.qk_norm);
  EXPECT_EQ(c.has_post_norms, s.post_norms);
  EXPECT_EQ(c.sliding_window, s.sliding_window);
  ASSERT_EQ(static_cast<int64_t>(model->weights.layers.size()), s.n_layer);
  if (s.sliding_window > 0) {
    // gemma3: every 6th layer is global.
    for (int64_t il = 0; il < s.n_layer; ++il) EXPECT_EQ(c.layer_is_swa[il], il % 6 != 5) << "layer " << il;
  }
}

// Every tiny shape in a plain and the mixed type, and every type on tiny-llama (the k-quant
// quantizers are slow enough that the full cross product would dominate the ASan run).
std::vector<std::tuple<std::string, std::string>> shape_type_cases() {
  std::vector<std::tuple<std::string, std::string>> cases;
  for (const auto& shape : kTinyShapes)
    for (const char* type : {"F16", "Q4_K_M"}) cases.emplace_back(shape, type);
  for (const char* type : {"F32", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"})
    cases.emplace_back("tiny-llama", type);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Tiny, TestGenShapes, ::testing::ValuesIn(shape_type_cases()), [](const auto& info) {
  std::string n = std::get<0>(info.param) + "_" + std::get<1>(info.param);
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

// End to end on every tiny shape: the tokenizer reads the vocabulary and round-trips text, and the
// CPU reference runs the model to finite logits of about unit scale (the N(0, 1/cols) weights keep
// activations sane: a tied/untied output of unit-RMS hidden states gives logits with std ~1).
class TestGenEndToEnd : public ::testing::TestWithParam<std::string> {};

TEST_P(TestGenEndToEnd, TokenizerAndCpuForward) {
  TempModel m(TestModelSpec{GetParam(), "Q4_K_M", 5}, "e2e");
  std::unique_ptr<Model> model = load_model(m.path);
  auto tok = Tokenizer::from_gguf(*model->file);
  const std::string text = "hello world, the capital of France is Paris";
  const std::vector<int32_t> ids = tok->encode(text, /*add_special=*/true);
  ASSERT_GT(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1) << "BOS";
  EXPECT_LT(ids.size(), text.size()) << "word pieces should merge";
  EXPECT_EQ(tok->decode(std::vector<int32_t>(ids.begin() + 1, ids.end())), text);

  CpuModel cpu(*model, 64, 1);
  const int64_t n_vocab = model->config.n_vocab;
  std::vector<float> logits(static_cast<size_t>(ids.size() * n_vocab));
  cpu.forward(ids.data(), static_cast<int64_t>(ids.size()), nullptr, logits.data());
  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    ASSERT_TRUE(std::isfinite(logits[i])) << "logit " << i % n_vocab << " of token " << i / n_vocab << " = " << logits[i];
    sum += logits[i], sum2 += double(logits[i]) * logits[i];
  }
  const double n = static_cast<double>(logits.size()), sd = std::sqrt(sum2 / n - (sum / n) * (sum / n));
  EXPECT_GT(sd, 0.1);
  EXPECT_LT(sd, 10.0);
}

INSTANTIATE_TEST_SUITE_P(Tiny, TestGenEndToEnd, ::testing::ValuesIn(kTinyShapes), [](const auto& info) {
  std::string n = info.param;
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

// Matrices are N(0, 1/cols): the sample std of R*C values is within a few standard errors
// (relative SE of a std estimate from N normal samples is 1/sqrt(2N)); norms are 1 +- 0.1.
TEST(TestGen, WeightStatistics) {
  TempModel m(TestModelSpec{"tiny-llama", "F32", 11}, "stats");
  auto f = GgufFile::open(m.path);
  for (const char* name : {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "token_embd.weight"}) {
    const GgufTensorInfo* t = f->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    std::vector<float> x(static_cast<size_t>(t->n_elements()));
    dequantize_row(t->type, t->data, x.data(), t->n_elements());
    double sum = 0, sum2 = 0;
    for (float v : x) sum += v, sum2 += double(v) * v;
    const double n = static_cast<double>(x.size()), mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
    const double want_sd = 1.0 / std::sqrt(static_cast<double>(t->cols()));
    EXPECT_NEAR(mean, 0.0, 5.0 * want_sd / std::sqrt(n)) << name;
    EXPECT_NEAR(sd / want_sd, 1.0, 5.0 / std::sqrt(2.0 * n)) << name;
  }
  const GgufTensorInfo* norm = f->find_tensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  const float* w = reinterpret_cast<const float*>(norm->data);
  double mean = 0;
  for (int64_t i = 0; i < norm->n_elements(); ++i) mean += w[i];
  mean /= static_cast<double>(norm->n_elements());
  EXPECT_NEAR(mean, 1.0, 5.0 * 0.1 / std::sqrt(static_cast<double>(norm->n_elements())));
}

// The Q4_K_M recipe (with its block-size fallback) reproduces the tensor types of the real
// Gemma 3 270M Q4_K_M file that the set-up installs.
TEST(TestGen, Q4KMRecipeMatchesRealGemmaFile) {
  const std::string path = default_model_path();  // throws (test fails) when the set-up was not run
  auto f = GgufFile::open(path);
  const TestModelSpec spec{"gemma3-270m", "Q4_K_M", 1};
  const int64_t n_layer = f->get_int("gemma3.block_count", -1);
  EXPECT_EQ(n_layer, test_model_shape("gemma3-270m").n_layer);
  int matrices = 0;
  for (const auto& t : f->tensors()) {
    if (t.n_dims != 2) continue;
    ++matrices;
    EXPECT_EQ(ggml_type_name(test_model_tensor_type(spec, t.name, t.cols(), n_layer)), std::string(ggml_type_name(t.type)))
        << t.name;
  }
  EXPECT_EQ(matrices, 1 + 7 * n_layer);
}

// The full-size shapes carry the published hyperparameters of the models they are named after.
TEST(TestGen, FullSizeShapes) {
  const TestModelShape l8 = test_model_shape("llama3-8b");
  EXPECT_EQ(l8.n_embd, 4096);
  EXPECT_EQ(l8.n_layer, 32);
  EXPECT_EQ(l8.n_head, 32);
  EXPECT_EQ(l8.n_head_kv, 8);
  EXPECT_EQ(l8.n_ff, 14336);
  EXPECT_EQ(l8.n_vocab, 128256);
  EXPECT_FLOAT_EQ(l8.rope_base, 500000.0f);
  const TestModelShape g = test_model_shape("gemma3-270m");
  EXPECT_EQ(g.n_vocab, 262144);
  EXPECT_EQ(g.head_dim, 256);
  EXPECT_EQ(g.sliding_window, 512);
  for (const auto& name : test_model_shapes()) {
    const TestModelShape s = test_model_shape(name);
    EXPECT_EQ(s.name, name);
    EXPECT_GT(s.n_vocab, 300) << name;
    EXPECT_EQ(s.n_head % s.n_head_kv, 0) << name;
  }
}

TEST(TestGen, UnknownShapeOrTypeIsAnError) {
  EXPECT_THROW(write_test_model(TestModelSpec{"tiny-nonesuch", "F32", 1}, temp_path("x")), Error);
  EXPECT_THROW(write_test_model(TestModelSpec{"tiny-llama", "Q9_Z", 1}, temp_path("y")), Error);
  try {
    test_model_shape("gpt-5");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny-llama"), std::string::npos) << "message should list shapes: " << e.what();
  }
}

}  // namespace
}  // namespace fathom

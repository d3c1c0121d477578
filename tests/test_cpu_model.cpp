// The CPU reference forward pass: against Hugging Face transformers goldens (tests/golden/, made by
// tools/make_goldens.py), incremental decoding against a full recompute, and the real default model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fathom/cpu_model.h"
#include "fathom/error.h"
#include "fathom/model.h"
#include "fathom/testgen.h"
#include "fathom/tokenizer.h"

namespace fathom {
namespace {

const std::string k_golden_dir = std::string(FATHOM_SOURCE_DIR) + "/tests/golden/";

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open golden file " + path);
  return nlohmann::json::parse(in);
}

// max |a - b| over a row, relative to the row's largest |b| (logits are compared at the scale of
// the distribution: an absolute error that small cannot move a probability by more than ~tol).
struct RowError {
  double rel = 0.0;
  int64_t index = -1;
  float got = 0, want = 0;
};
RowError row_error(const float* got, const float* want, int64_t n) {
  double scale = 0.0;
  for (int64_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  RowError e;
  for (int64_t i = 0; i < n; ++i) {
    const double r = std::fabs(static_cast<double>(got[i]) - want[i]) / std::max(scale, 1e-30);
    if (r > e.rel) e = {r, i, got[i], want[i]};
  }
  return e;
}

// ---- Hugging Face goldens on the committed tiny models ----------------------------------------

class CpuModelGolden : public ::testing::TestWithParam<std::string> {};

// The committed goldens are fp32 transformers logits for every prompt position. Both sides
// dequantize nothing (F32 files) and differ only by summation order: the tolerance is
// 1e-4 of the logit scale, about 100x the fp32 rounding that accumulates over the tiny depth.
TEST_P(CpuModelGolden, MatchesTransformers) {
  const std::string name = GetParam();
  const nlohmann::json g = read_json(k_golden_dir + name + ".json");
  auto model = load_model(k_golden_dir + g.at("model").get<std::string>());
  const std::vector<int32_t> tokens = g.at("tokens").get<std::vector<int32_t>>();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_vocab = model->config.n_vocab;
  ASSERT_EQ(g.at("logits").size(), tokens.size());

  CpuModel cpu(*model, 64, 1);
  std::vector<float> logits(n * n_vocab);
  cpu.forward(tokens.data(), n, nullptr, logits.data());
  double worst = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<float> want = g["logits"][t].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(want.size()), n_vocab);
    const RowError e = row_error(logits.data() + t * n_vocab, want.data(), n_vocab);
    worst = std::max(worst, e.rel);
    EXPECT_LT(e.rel, 1e-4) << name << " position " << t << " token id " << e.index << ": "
                           << e.got << " vs transformers " << e.want;
  }
  RecordProperty("max_rel_error", std::to_string(worst));
  std::printf("  %s: max |logit - hf| / max |hf| = %.3g over %lld positions\n", name.c_str(), worst,
              static_cast<long long>(n));
}

INSTANTIATE_TEST_SUITE_P(Tiny, CpuModelGolden,
                         ::testing::Values("tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// The tiny gemma3 golden has a global layer and a window of 4: check the loader saw them.
TEST(CpuModel, TinyGemma3ConfigMatchesLlamaCppRules) {
  auto model = load_model(k_golden_dir + "tiny-gemma3.gguf");
  const ModelConfig& c = model->config;
  EXPECT_EQ(c.arch, Arch::GEMMA3);
  ASSERT_EQ(c.layer_is_swa.size(), 6u);
  for (int il = 0; il < 6; ++il) EXPECT_EQ(c.layer_is_swa[il], il != 5) << "layer " << il;
  EXPECT_EQ(c.sliding_window, 4);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(12.0f));
  EXPECT_FLOAT_EQ(c.rope_freq_scale, 0.5f);
  EXPECT_FLOAT_EQ(c.rope_freq_base_swa, 10000.0f);
}

// ---- incremental decoding == full recompute ------------------------------------------------

// Runs `tokens` in the given chunk sizes and returns the logits of every position.
std::vector<float> logits_in_chunks(CpuModel& m, const std::vector<int32_t>& tokens,
                                    const std::vector<int64_t>& chunks) {
  const int64_t n_vocab = m.config().n_vocab;
  std::vector<float> out(tokens.size() * n_vocab);
  m.reset();
  int64_t done = 0;
  for (int64_t c : chunks) {
    m.forward(tokens.data() + done, c, nullptr, out.data() + done * n_vocab);
    done += c;
  }
  EXPECT_EQ(done, static_cast<int64_t>(tokens.size()));
  EXPECT_EQ(m.n_past(), done);
  return out;
}

void expect_incremental_matches_full(const Model& model, int64_t n_tokens, const std::string& what) {
  const int64_t n_vocab = model.config.n_vocab;
  std::vector<int32_t> tokens(n_tokens);
  for (int64_t i = 0; i < n_tokens; ++i) tokens[i] = static_cast<int32_t>((i * 37 + 11) % n_vocab);
  CpuModel m(model, n_tokens + 4, 2);
  const std::vector<float> full = logits_in_chunks(m, tokens, {n_tokens});
  // Prefill then one token per step (6 steps: each re-reads every weight); and an uneven chunking.
  std::vector<int64_t> steps = {n_tokens - 6};
  for (int i = 0; i < 6; ++i) steps.push_back(1);
  const std::vector<int64_t> uneven = {3, n_tokens - 5, 2};
  for (const auto& chunks : {steps, uneven}) {
    const std::vector<float> inc = logits_in_chunks(m, tokens, chunks);
    for (int64_t t = 0; t < n_tokens; ++t) {
      // Same arithmetic per row whatever the batch: only the attention length differs, and it
      // does not (masked keys are skipped). 1e-5 leaves room for libm/compiler contraction.
      const RowError e = row_error(inc.data() + t * n_vocab, full.data() + t * n_vocab, n_vocab);
      EXPECT_LT(e.rel, 1e-5) << what << " chunks of " << chunks.size() << ", position " << t
                             << " token id " << e.index << ": " << e.got << " vs " << e.want;
    }
  }
  // The last-token output equals the last row of the all-logits output.
  std::vector<float> last(n_vocab);
  m.reset();
  m.forward(tokens.data(), n_tokens, last.data());
  const RowError e = row_error(last.data(), full.data() + (n_tokens - 1) * n_vocab, n_vocab);
  EXPECT_EQ(e.rel, 0.0) << what;
  // truncate keeps the prefix: re-running the tail reproduces its logits.
  m.truncate(n_tokens - 3);
  std::vector<float> tail(3 * n_vocab);
  m.forward(tokens.data() + n_tokens - 3, 3, nullptr, tail.data());
  EXPECT_LT(row_error(tail.data() + 2 * n_vocab, full.data() + (n_tokens - 1) * n_vocab, n_vocab).rel,
            1e-5)
      << what << " after truncate";
}

TEST_P(CpuModelGolden, IncrementalEqualsFullRecompute) {
  auto model = load_model(k_golden_dir + GetParam() + ".gguf");
  expect_incremental_matches_full(*model, 12, GetParam());
}

// The set-up helper's generator: realistic widths, quantized weights (Q4_K_M mixes Q4_K/Q6_K and
// the Q5_0/Q8_0 fallbacks), every architecture.
struct GeneratedCase {
  const char* shape;
  const char* type;
};
class CpuModelGenerated : public ::testing::TestWithParam<GeneratedCase> {};

TEST_P(CpuModelGenerated, IncrementalEqualsFullRecompute) {
  const GeneratedCase c = GetParam();
  // The pid keeps two test processes (two build trees' ctest runs at once) off one file.
  const std::string path = ::testing::TempDir() + "fathom_cpu_" + c.shape + "_" + c.type + "_" +
                           std::to_string(::getpid()) + ".gguf";
  TestModelSpec spec;
  spec.shape = c.shape;
  spec.type = c.type;
  spec.seed = 7;
  write_test_model(spec, path);
  auto model = load_model(path);
  // 40 tokens cross tiny-gemma3's 32-token window.
  expect_incremental_matches_full(*model, model->config.arch == Arch::GEMMA3 ? 40 : 12,
                                  std::string(c.shape) + " " + c.type);
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Generated, CpuModelGenerated,
                         ::testing::Values(GeneratedCase{"tiny-llama", "F32"},
                                           GeneratedCase{"tiny-qwen2", "Q4_K_M"},
                                           GeneratedCase{"tiny-qwen3", "Q8_0"},
                                           GeneratedCase{"tiny-gemma3", "Q4_K_M"}),
                         [](const auto& info) {
                           std::string s = std::string(info.param.shape) + "_" + info.param.type;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// ---- hook and errors --------------------------------------------------------------------------

TEST(CpuModel, HookSeesEveryStepInOrder) {
  auto model = load_model(k_golden_dir + "tiny-gemma3.gguf");
  CpuModel m(*model, 16, 1);
  std::vector<std::string> names;
  int64_t last_layer = -2;
  bool ordered = true;
  m.set_hook([&](int64_t layer, const char* name, const float* data, int64_t n_tokens, int64_t n) {
    names.push_back(std::to_string(layer) + ":" + name);
    if (layer < last_layer) ordered = false;
    last_layer = layer;
    EXPECT_EQ(n_tokens, 3);
    EXPECT_GT(n, 0);
    for (int64_t i = 0; i < n_tokens * n; ++i) ASSERT_TRUE(std::isfinite(data[i])) << name;
  });
  const int32_t tokens[3] = {1, 2, 3};
  std::vector<float> all(3 * model->config.n_vocab);
  m.forward(tokens, 3, nullptr, all.data());
  EXPECT_TRUE(ordered);
  EXPECT_EQ(names.front(), "-1:inp_embd");
  EXPECT_EQ(names.back(), "6:result_output");
  EXPECT_NE(std::find(names.begin(), names.end(), "5:ffn_post_norm"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "0:attn_post_norm"), names.end());
}

TEST(CpuModel, ContextOverflowAndBadTokensThrow) {
  auto model = load_model(k_golden_dir + "tiny-llama.gguf");
  CpuModel m(*model, 4, 1);
  const int32_t tokens[5] = {1, 2, 3, 4, 5};
  std::vector<float> logits(model->config.n_vocab);
  EXPECT_THROW(m.forward(tokens, 5, logits.data()), Error);
  EXPECT_EQ(m.n_past(), 0);
  const int32_t bad = static_cast<int32_t>(model->config.n_vocab);
  EXPECT_THROW(m.forward(&bad, 1, logits.data()), Error);
  EXPECT_EQ(m.n_past(), 0);
  m.forward(tokens, 4, logits.data());
  EXPECT_THROW(m.forward(tokens, 1, logits.data()), Error);
}

// ---- the real default model (installed by scripts/setup.sh) -----------------------------------

// Greedy continuation of "The capital of France is" and logits at every step against transformers
// run on the gguf-py-dequantized weights of the same file (tests/golden/gemma3-270m-q4_k_m.json).
TEST(CpuModelReal, Gemma3_270mMatchesTransformersGolden) {
  std::string path;
  try {
    path = default_model_path();
  } catch (const Error& e) {
    FAIL() << e.what() << " (run scripts/setup.sh)";
  }
  std::unique_ptr<Model> model;
  try {
    model = load_model(path);
  } catch (const Error& e) {
    FAIL() << e.what() << " (run scripts/setup.sh to install the default model)";
  }
  const nlohmann::json g = read_json(k_golden_dir + "gemma3-270m-q4_k_m.json");
  const std::vector<int32_t> prompt = g.at("prompt").get<std::vector<int32_t>>();
  const std::vector<int32_t> greedy = g.at("greedy").get<std::vector<int32_t>>();
  const int64_t stride = g.at("stride_ids_step").get<int64_t>();
  const int64_t n_vocab = model->config.n_vocab;
  ASSERT_EQ(n_vocab, g.at("n_vocab").get<int64_t>());

  CpuModel m(*model, 64);
  std::vector<float> logits(n_vocab);
  m.forward(prompt.data(), static_cast<int64_t>(prompt.size()), logits.data());
  // Both sides use identical dequantized weights; they differ by fp32 summation order over 18
  // layers of width 640-2048 and a 262144-row output: 1e-4 of the logit scale.
  const double tol = 1e-4;
  double worst = 0.0;
  std::vector<int32_t> ours;
  for (size_t step = 0; step < greedy.size(); ++step) {
    const nlohmann::json& s = g["steps"][step];
    const auto top_ids = s.at("top_ids").get<std::vector<int64_t>>();
    const auto top_logits = s.at("top_logits").get<std::vector<float>>();
    const auto stride_logits = s.at("stride_logits").get<std::vector<float>>();
    std::vector<float> got, want;
    for (size_t i = 0; i < top_ids.size(); ++i) {
      got.push_back(logits[top_ids[i]]);
      want.push_back(top_logits[i]);
    }
    for (size_t i = 0; i < stride_logits.size(); ++i) {
      got.push_back(logits[i * stride]);
      want.push_back(stride_logits[i]);
    }
    const RowError e = row_error(got.data(), want.data(), static_cast<int64_t>(got.size()));
    worst = std::max(worst, e.rel);
    EXPECT_LT(e.rel, tol) << "step " << step << " compared logit #" << e.index << ": " << e.got
                          << " vs transformers " << e.want;
    const int32_t best =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ours.push_back(best);
    // The argmax must agree unless transformers' top two are closer than our tolerance.
    if (s.at("margin").get<double>() > 2 * tol * std::fabs(top_logits[0])) {
      ASSERT_EQ(best, greedy[step]) << "greedy token differs at step " << step;
    }
    m.forward(&greedy[step], 1, logits.data());  // follow the golden path either way
  }
  // The prompt ids came from the vocabulary's pieces; fathom's tokenizer must agree, and it
  // renders the continuation we produced.
  auto tok = Tokenizer::from_gguf(*model->file);
  EXPECT_EQ(tok->encode("The capital of France is", true), prompt);
  std::printf("  gemma3-270m: max |logit - hf| / max |hf| = %.3g over %zu steps\n"
              "  greedy: \"The capital of France is%s\"\n",
              worst, greedy.size(), tok->decode(ours).c_str());
}

}  // namespace
}  // namespace fathom

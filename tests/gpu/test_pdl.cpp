// Programmatic dependent launch (src/cuda/pdl.cuh) changes when kernels start, never what they
// compute: the engine's greedy decode with PDL forced on must give bit-identical logits and tokens
// to the same run with PDL off. A difference means some kernel reads (or writes) memory before its
// pdl_wait(). The runs cover prefill, single-sequence decode through the captured graph (split-K
// attention + reduce: n_ctx 512 gives several splits) and a batched decode of three sequences.
// Below sm_90 both runs are plain launches and the test checks nothing new (it says so).
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/pdl.cuh"
#include "fathom/cuda_engine.h"
#include "fathom/model.h"
#include "fathom/testgen.h"
#include "test_engine_util.h"

namespace fathom {
namespace {

// Puts the PDL override back to the environment's choice however the test ends.
struct PdlOverride {
  explicit PdlOverride(int v) { cuda::pdl_set_override(v); }
  ~PdlOverride() { cuda::pdl_set_override(-1); }
  PdlOverride(const PdlOverride&) = delete;
  PdlOverride& operator=(const PdlOverride&) = delete;
};

const Model& pdl_test_model(const std::string& shape, const std::string& type) {
  return test::cached_test_model("pdl", shape, type, 11);
}

std::vector<int32_t> make_prompt(int64_t n, int64_t n_vocab, int32_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    p[size_t(i)] = int32_t((i * 53 + 7 + salt * 211) % (n_vocab - 300) + 259);
  return p;
}

// Everything a run produced, in order: logits of every step (prefill last token, then each
// decode step's rows) and every greedy token.
struct Trace {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};

constexpr int kSteps = 24;

Trace run(const Model& model, int pdl) {
  PdlOverride guard(pdl);
  const int64_t V = model.config.n_vocab;
  CudaEngineOptions o;
  o.n_ctx = 512;
  o.max_batch = 3;
  CudaEngine gpu(model, o);
  Trace tr;
  std::vector<float> logits(size_t(V) * 3);
  auto keep = [&](int rows) { tr.logits.insert(tr.logits.end(), logits.begin(), logits.begin() + rows * V); };

  // One sequence: prefill, then greedy decode steps (graph captured on the second step).
  const std::vector<int32_t> prompt = make_prompt(37, V, 0);
  int32_t tok = gpu.eval_seq(0, prompt.data(), int64_t(prompt.size()), logits.data());
  keep(1);
  tr.tokens.push_back(tok);
  for (int i = 0; i < kSteps; ++i) {
    const int32_t seq = 0;
    int32_t out = -1;
    gpu.decode_batch(&seq, &tok, 1, &out, logits.data());
    keep(1);
    tr.tokens.push_back(out);
    tok = out;
  }

  // Three sequences of different lengths decoded together.
  const int32_t seqs[3] = {0, gpu.add_sequence(), gpu.add_sequence()};
  int32_t toks[3] = {tok, 0, 0};
  for (int s = 1; s < 3; ++s) {
    const std::vector<int32_t> p = make_prompt(5 + 30 * s, V, s);
    toks[s] = gpu.eval_seq(seqs[s], p.data(), int64_t(p.size()), logits.data());
    keep(1);
    tr.tokens.push_back(toks[s]);
  }
  for (int i = 0; i < kSteps; ++i) {
    int32_t out[3];
    gpu.decode_batch(seqs, toks, 3, out, logits.data());
    keep(3);
    for (int s = 0; s < 3; ++s) {
      tr.tokens.push_back(out[s]);
      toks[s] = out[s];
    }
  }
  return tr;
}

class PdlBitExact : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(PdlBitExact, DecodeWithAndWithoutPdl) {
  SKIP_WITHOUT_GPU();
  const Model& model = pdl_test_model(GetParam().first, GetParam().second);
  {
    PdlOverride on(1);
    if (!cuda::pdl_enabled())
      std::printf("PDL is not available on this device (below sm_90): both runs are plain\n");
  }
  const Trace with = run(model, 1);
  const Trace without = run(model, 0);
  ASSERT_EQ(with.logits.size(), without.logits.size());
  const int64_t V = model.config.n_vocab;
  for (size_t i = 0; i < with.logits.size(); ++i) {
    if (std::memcmp(&with.logits[i], &without.logits[i], sizeof(float)) != 0) {
      ADD_FAILURE() << "logits differ first at row " << i / size_t(V) << " (in run order), id "
                    << i % size_t(V) << ": " << with.logits[i] << " with PDL vs "
                    << without.logits[i] << " without";
      break;
    }
  }
  EXPECT_EQ(with.tokens, without.tokens);
}

INSTANTIATE_TEST_SUITE_P(Tiny, PdlBitExact,
                         ::testing::Values(std::make_pair("tiny-llama", "Q4_K"),
                                           std::make_pair("tiny-qwen3", "F16"),
                                           std::make_pair("tiny-gemma3", "F32")),
                         [](const auto& info) {
                           std::string s = std::string(info.param.first) + "_" + info.param.second;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

}  // namespace
}  // namespace fathom

// The generation loop on a scripted fake engine and a tiny tokenizer: stop strings split across
// tokens are never printed, EOG stops, a too-long prompt is a clear error, stats count right.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/generate.h"
#include "fathom/cuda_engine.h"
#include "fathom/model.h"
#include "fathom/testgen.h"
#include "fathom/tokenizer.h"

using namespace fathom;

namespace {

// A tiny vocabulary: token id -> bytes. Token 0 is EOS. Tokens 10/11 are the two halves of the
// UTF-8 encoding of "é" (0xC3 0xA9), to check that partial characters are held back.
const std::map<int32_t, std::string> kVocab = {
    {0, "<eos>"}, {1, "Hello"}, {2, ","}, {3, " world"}, {4, "!"}, {5, " ST"}, {6, "OP"},
    {7, " more"}, {8, "S"}, {9, "T"}, {10, "\xC3"}, {11, "\xA9"}, {12, "\n"}, {13, "##"},
};

// Byte-level detokenizer that only releases complete UTF-8 characters (what the real
// StreamDecoder guarantees).
class TinyText : public TokenTextStream {
 public:
  bool is_eog(int32_t t) const override { return t == 0; }
  std::string push(int32_t t) override {
    pending_ += kVocab.at(t);
    size_t complete = complete_prefix(pending_);
    std::string out = pending_.substr(0, complete);
    pending_.erase(0, complete);
    return out;
  }
  std::string flush() override {
    std::string out = pending_.empty() ? "" : "\xEF\xBF\xBD";
    pending_.clear();
    return out;
  }

 private:
  static size_t complete_prefix(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
      unsigned char c = s[i];
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
      if (i + len > s.size()) break;
      i += len;
    }
    return i;
  }
  std::string pending_;
};

// Returns scripted logits: after the k-th eval, the logits put all mass on script[k] (greedy and
// sampling agree). Records what was evaluated.
class ScriptedEngine : public Engine {
 public:
  ScriptedEngine(std::vector<int32_t> script, int64_t n_ctx, int64_t n_vocab = 16)
      : script_(std::move(script)), n_ctx_(n_ctx), n_vocab_(n_vocab) {}
  const char* name() const override { return "fake"; }
  int64_t n_vocab() const override { return n_vocab_; }
  int64_t n_ctx() const override { return n_ctx_; }
  int64_t n_past() const override { return static_cast<int64_t>(cache.size()); }
  void eval(const int32_t* tokens, int64_t n, float* logits) override {
    FATHOM_CHECK(n_past() + n <= n_ctx_, "fake engine overflow");
    cache.insert(cache.end(), tokens, tokens + n);
    evals.push_back(n);
    const int32_t next = calls_ < script_.size() ? script_[calls_] : 7;
    ++calls_;
    for (int64_t i = 0; i < n_vocab_; ++i) logits[i] = -10.0f;
    logits[next] = 10.0f;
  }
  void truncate(int64_t n) override { cache.resize(static_cast<size_t>(n)); }

  std::vector<int32_t> cache;
  std::vector<int64_t> evals;

 private:
  std::vector<int32_t> script_;
  size_t calls_ = 0;
  int64_t n_ctx_, n_vocab_;
};

GenerateParams greedy(int64_t n_predict, std::vector<std::string> stop = {}) {
  GenerateParams p;
  p.n_predict = n_predict;
  p.sampler.temp = 0.0f;
  p.stop = std::move(stop);
  return p;
}

std::string run_stream(ScriptedEngine& eng, const GenerateParams& p, GenerateResult* res = nullptr,
                       std::vector<int32_t> prompt = {1, 2}) {
  TinyText text;
  std::string streamed;
  GenerateResult r = generate(eng, text, prompt, p, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(streamed, r.text);
  if (res) *res = r;
  return streamed;
}

}  // namespace

TEST(StopStringFilter, HoldsBackPossiblePrefixAndReleasesIt) {
  StopStringFilter f({"STOP"});
  EXPECT_EQ(f.push("abc S"), "abc ");
  EXPECT_EQ(f.push("T"), "");
  EXPECT_EQ(f.push("x"), "STx");  // "STx" can no longer start "STOP"
  EXPECT_FALSE(f.stopped());
  EXPECT_EQ(f.push("ST"), "");
  EXPECT_EQ(f.flush(), "ST");
}

TEST(StopStringFilter, StopsAtEarliestMatchAndDropsTheRest) {
  StopStringFilter f({"</s>", "##"});
  EXPECT_EQ(f.push("a<"), "a");
  EXPECT_EQ(f.push("/s> tail ## more"), "");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(f.matched(), "</s>");
  EXPECT_EQ(f.push("later"), "");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStringFilter, OverlappingPrefixesAndEmptyStops) {
  StopStringFilter f({"aab", ""});  // the empty stop string is ignored
  EXPECT_EQ(f.push("a"), "");
  EXPECT_EQ(f.push("a"), "");
  EXPECT_EQ(f.push("a"), "a");  // "aaa": only the last "aa" can still start "aab"
  EXPECT_EQ(f.push("b"), "");
  EXPECT_TRUE(f.stopped());
}

TEST(Generate, StopStringSplitAcrossTokensIsNeverPrinted) {
  // Tokens: "Hello" "," " world" " ST" "OP" " more": the stop string "STOP" spans two tokens.
  ScriptedEngine eng({1, 2, 3, 5, 6, 7, 7, 7}, 64);
  std::string printed = run_stream(eng, greedy(20, {"STOP"}));
  EXPECT_EQ(printed, "Hello, world ");
  EXPECT_EQ(printed.find("ST"), std::string::npos);
}

TEST(Generate, StopStringOfSingleCharacterTokens) {
  // "S" "T" "OP": each token alone is a prefix of "STOP"; nothing may leak before the match.
  ScriptedEngine eng({8, 9, 6, 4}, 64);
  GenerateResult r;
  EXPECT_EQ(run_stream(eng, greedy(20, {"STOP"}), &r), "");
  EXPECT_EQ(r.stats.stop_reason, StopReason::STOP_STRING);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{8, 9, 6}));
}

TEST(Generate, HeldPrefixIsReleasedWhenNoStopFollows) {
  // "Hello" " ST" "!" then EOS: " ST" is held until "!" shows it is not "STOP".
  ScriptedEngine eng({1, 5, 4, 0}, 64);
  GenerateResult r;
  EXPECT_EQ(run_stream(eng, greedy(20, {"STOP"}), &r), "Hello ST!");
  EXPECT_EQ(r.stats.stop_reason, StopReason::EOG);
}

TEST(Generate, HeldPrefixIsReleasedAtTokenLimit) {
  ScriptedEngine eng({1, 5}, 64);
  EXPECT_EQ(run_stream(eng, greedy(2, {"STOP"})), "Hello ST");
}

TEST(Generate, EosStopsAndIsNotPrinted) {
  ScriptedEngine eng({1, 4, 0, 7, 7}, 64);
  GenerateResult r;
  EXPECT_EQ(run_stream(eng, greedy(-1), &r), "Hello!");
  EXPECT_EQ(r.stats.stop_reason, StopReason::EOG);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{1, 4, 0}));
  // The EOS token is sampled but never evaluated.
  EXPECT_EQ(eng.cache, (std::vector<int32_t>{1, 2, 1, 4}));
}

TEST(Generate, MultiByteCharacterSplitAcrossTokens) {
  ScriptedEngine eng({10, 11, 4, 0}, 64);
  std::vector<std::string> pieces;
  TinyText text;
  generate(eng, text, {1}, greedy(10), [&](const std::string& s) { pieces.push_back(s); });
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], "\xC3\xA9");
  EXPECT_EQ(pieces[1], "!");
}

TEST(Generate, StatsCountPrefillAndDecode) {
  ScriptedEngine eng({1, 2, 3, 4, 7, 7, 7}, 64);
  GenerateResult r;
  run_stream(eng, greedy(5), &r, {1, 2, 3});
  EXPECT_EQ(r.stats.n_prompt, 3);
  EXPECT_EQ(r.stats.n_generated, 5);
  EXPECT_EQ(r.stats.n_decode_evals, 4);  // the 5th token is sampled, not evaluated
  EXPECT_EQ(r.stats.stop_reason, StopReason::N_PREDICT);
  EXPECT_EQ(eng.evals, (std::vector<int64_t>{3, 1, 1, 1, 1}));
  EXPECT_EQ(eng.n_past(), 3 + 4);
  EXPECT_GE(r.stats.prefill_s, 0.0);
  EXPECT_GE(r.stats.decode_s, 0.0);
  EXPECT_EQ(r.text, "Hello, world! more");
}

TEST(Generate, NPredictZeroOnlyPrefills) {
  ScriptedEngine eng({1}, 64);
  GenerateResult r;
  EXPECT_EQ(run_stream(eng, greedy(0), &r), "");
  EXPECT_EQ(r.stats.n_generated, 0);
  EXPECT_EQ(eng.n_past(), 2);
}

TEST(Generate, PlainGreedyUsesEngineArgmaxPenaltiesDoNot) {
  struct Counting : ScriptedEngine {
    using ScriptedEngine::ScriptedEngine;
    int32_t eval_greedy(const int32_t* t, int64_t n) override {
      ++greedy_calls;
      return Engine::eval_greedy(t, n);
    }
    int greedy_calls = 0;
  };
  Counting a({1, 2, 3, 7}, 64);
  TinyText text;
  EXPECT_EQ(generate(a, text, {1}, greedy(4)).text, "Hello, world more");
  EXPECT_EQ(a.greedy_calls, 4);  // prefill + 3 decode steps
  Counting b({1, 2, 3, 7}, 64);
  GenerateParams p = greedy(4);
  p.sampler.repeat_penalty = 1.1f;
  EXPECT_EQ(generate(b, text, {1}, p).text, "Hello, world more");
  EXPECT_EQ(b.greedy_calls, 0);
}

TEST(Generate, PromptLongerThanContextIsAClearError) {
  ScriptedEngine eng({1}, 4);
  TinyText text;
  try {
    generate(eng, text, {1, 2, 3, 4, 5, 6}, greedy(3));
    FAIL() << "expected fathom::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4"), std::string::npos) << msg;
  }
  EXPECT_TRUE(eng.evals.empty()) << "nothing may be evaluated before the check";
}

TEST(Generate, StopsWhenTheContextIsFull) {
  ScriptedEngine eng({7, 7, 7, 7, 7, 7, 7, 7}, 5);
  GenerateResult r;
  run_stream(eng, greedy(-1), &r, {1, 2});
  EXPECT_EQ(r.stats.stop_reason, StopReason::CONTEXT_FULL);
  EXPECT_EQ(eng.n_past(), 5);
  EXPECT_EQ(r.stats.n_generated, 4);  // 3 evaluated + 1 sampled when the cache was full
}

TEST(Generate, ContinuesAfterCachedTokens) {
  ScriptedEngine eng({1, 4, 0, 3, 0}, 64);
  TinyText text;
  GenerateResult a = generate(eng, text, {1, 2}, greedy(-1));
  EXPECT_EQ(a.text, "Hello!");
  // Second turn: appended after the cache (a chat turn); too long is reported with both counts.
  GenerateResult b = generate(eng, text, {12, 13}, greedy(-1));
  EXPECT_EQ(b.stats.n_prompt, 2);
  EXPECT_EQ(eng.cache, (std::vector<int32_t>{1, 2, 1, 4, 12, 13, 3}));
  ScriptedEngine small({1}, 3);
  small.cache = {1, 2};
  EXPECT_THROW(generate(small, text, {3, 4}, greedy(1)), Error);
}

TEST(PromptCache, ReusesTheCommonPrefixAcrossTurns) {
  ScriptedEngine eng({1, 4, 0, 3, 0, 4, 0}, 64);
  TinyText text;
  PromptCache cache;
  // Turn 1: nothing cached.
  std::vector<int32_t> full1 = {13, 1, 12};
  auto s1 = cache.prepare(eng, full1);
  EXPECT_EQ(s1, full1);
  GenerateResult r1 = generate(eng, text, s1, greedy(-1));
  cache.commit(s1, r1);  // sampled 1 4 0: "1 4" evaluated
  EXPECT_EQ(cache.tokens(), eng.cache);
  // Turn 2 re-encodes the conversation: the answer re-tokenized as {1, 9} differs from the
  // generated {1, 4} at its second token, so the cache is rewound to 4 tokens.
  std::vector<int32_t> full2 = {13, 1, 12, 1, 9, 12, 2};
  auto s2 = cache.prepare(eng, full2);
  EXPECT_EQ(cache.reused(), 4u);
  EXPECT_EQ(s2, (std::vector<int32_t>{9, 12, 2}));
  GenerateResult r2 = generate(eng, text, s2, greedy(-1));
  cache.commit(s2, r2);
  EXPECT_EQ(cache.tokens(), eng.cache);
  EXPECT_EQ(eng.cache, (std::vector<int32_t>{13, 1, 12, 1, 9, 12, 2, 3}));
  // The same prompt again: one token is still evaluated, for fresh logits.
  auto s3 = cache.prepare(eng, {13, 1});
  EXPECT_EQ(s3, (std::vector<int32_t>{1}));
  EXPECT_EQ(eng.n_past(), 1);
  // An engine changed behind the cache's back is cleared.
  eng.cache.push_back(5);
  auto s4 = cache.prepare(eng, {13, 1});
  EXPECT_EQ(s4, (std::vector<int32_t>{13, 1}));
  EXPECT_EQ(eng.n_past(), 0);
}

// The real fathom::Tokenizer through generate(Engine&, const Tokenizer&, ...): a tiny SPM
// vocabulary with byte tokens and a Gemma-style <end_of_turn>.
TEST(Generate, WithRealTinyTokenizer) {
  TokenizerSpec spec;
  spec.kind = TokenizerKind::SPM;
  spec.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81Hello", "\xE2\x96\x81world", "!",
                 "<0xC3>", "<0xA9>", "<end_of_turn>", "\xE2\x96\x81STOP"};
  spec.types = {2, 3, 3, 1, 1, 1, 6, 6, 3, 1};
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.add_bos = true;
  spec.add_space_prefix = true;  // the decoder's prefix stripping must not eat " world"
  Tokenizer tok(spec);
  ASSERT_TRUE(tok.is_eog(8));

  ScriptedEngine eng({4, 6, 7, 5, 9, 8}, 64, 10);
  std::string streamed;
  // Prompt given as ids: "▁Hello" is not reachable by merges in this four-word vocabulary.
  GenerateResult r = generate(eng, tok, {1, 3}, greedy(20),
                              [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(streamed, " world\xC3\xA9! STOP");
  EXPECT_EQ(r.stats.stop_reason, StopReason::EOG);
  EXPECT_EQ(r.stats.n_prompt, 2);  // <s> ▁Hello

  ScriptedEngine eng2({4, 6, 7, 5, 9, 8}, 64, 10);
  GenerateResult r2 = generate(eng2, tok, {1, 3}, greedy(20, {" STOP"}));
  EXPECT_EQ(r2.text, " world\xC3\xA9!");
  EXPECT_EQ(r2.stats.stop_reason, StopReason::STOP_STRING);
}

// ---- the CPU engine on a generated tiny model -------------------------------------------------

namespace {
std::unique_ptr<Model> tiny_llama(const std::string& tag) {
  const std::string path = ::testing::TempDir() + "fathom_generate_" + tag + ".gguf";
  TestModelSpec spec;
  spec.shape = "tiny-llama";
  spec.type = "F32";
  spec.seed = 11;
  write_test_model(spec, path);
  auto model = load_model(path);  // the mapping stays valid after the unlink
  std::remove(path.c_str());
  return model;
}
}  // namespace

TEST(CpuEngine, TruncateThenEvalEqualsFreshEval) {
  auto model = tiny_llama("truncate");
  CpuEngine a(*model, 32, 1), b(*model, 32, 1);
  const int64_t nv = a.n_vocab();
  std::vector<float> la(nv), lb(nv);
  const std::vector<int32_t> conv = {1, 40, 41, 42, 43, 44};
  a.eval(conv.data(), 6, la.data());
  a.truncate(3);
  EXPECT_EQ(a.n_past(), 3);
  const std::vector<int32_t> tail = {50, 51};
  a.eval(tail.data(), 2, la.data());
  const std::vector<int32_t> fresh = {1, 40, 41, 50, 51};
  b.eval(fresh.data(), 5, lb.data());
  // Same tokens, same positions, same code path: bit-identical except for the split of the
  // prefill into batches, which the reference computes row by row.
  double worst = 0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < nv; ++i)
    if (std::abs(la[i] - lb[i]) > worst) worst = std::abs(la[i] - lb[i]), worst_i = i;
  EXPECT_LE(worst, 1e-4) << "worst logit " << worst_i << ": " << la[worst_i] << " vs " << lb[worst_i];
  EXPECT_THROW(a.truncate(99), Error);
  a.truncate(0);
  EXPECT_EQ(a.n_past(), 0);
}

TEST(CpuEngine, MakeEngineChoosesDeviceAndChecksContext) {
  auto model = tiny_llama("make");
  EngineOptions o;
  o.device = "cpu";
  o.n_ctx = 16;
  std::string why;
  auto e = make_engine(*model, o, &why);
  EXPECT_STREQ(e->name(), "cpu");
  EXPECT_EQ(e->n_ctx(), 16);
  EXPECT_NE(why.find("cpu"), std::string::npos);
  o.device = "tpu";
  EXPECT_THROW(make_engine(*model, o), Error);
  o.device = "cpu";
  o.n_ctx = model->config.n_ctx_train + 1;
  EXPECT_THROW(make_engine(*model, o), Error);
  EXPECT_EQ(default_n_ctx(model->config), std::min<int64_t>(model->config.n_ctx_train, 4096));
  if (!cuda_engine_available()) {
    o.device = "gpu";
    o.n_ctx = 16;
    EXPECT_THROW(make_engine(*model, o), Error);
    o.device = "auto";
    EXPECT_STREQ(make_engine(*model, o)->name(), "cpu");
  }
}

TEST(CpuEngine, SeededGenerationIsReproducible) {
  auto model = tiny_llama("seed");
  auto tok = Tokenizer::from_gguf(*model->file);
  const std::vector<int32_t> prompt = tok->encode("the quick brown", true);
  auto run = [&](uint64_t seed) {
    CpuEngine e(*model, 64, 1);
    GenerateParams p;
    p.n_predict = 12;
    p.sampler.temp = 1.0f;
    p.sampler.seed = seed;
    return generate(e, *tok, prompt, p).tokens;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));

  CpuEngine e(*model, 8, 1);
  std::vector<int32_t> long_prompt(9, 40);
  try {
    generate(e, *tok, long_prompt, GenerateParams{});
    FAIL() << "expected fathom::Error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("9 tokens"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("only 8"), std::string::npos) << err.what();
  }
}

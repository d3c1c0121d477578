// The generation loop: prefill a prompt once, then sample and evaluate one token per step,
// streaming UTF-8-safe text, stopping on end-of-generation tokens, stop strings, n_predict or a
// full context. Works on any Engine (the CPU reference and the CUDA engine implement it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fathom/model.h"
#include "fathom/sampler.h"
#include "fathom/tokenizer.h"

namespace fathom {

// A model with a KV cache that turns tokens into next-token logits. Positions are implicit:
// eval() appends its tokens after the n_past() already in the cache.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* name() const = 0;   // "cpu", "cuda": printed by the CLI
  virtual int64_t n_vocab() const = 0;
  virtual int64_t n_ctx() const = 0;      // most tokens the KV cache holds
  virtual int64_t n_past() const = 0;     // tokens in the KV cache now
  // Evaluates tokens (n,) at positions n_past() .. n_past()+n-1, appends them to the cache and
  // writes the logits of the last one to logits_last (n_vocab(),). n == 1 is a decode step,
  // n > 1 a prefill. Throws fathom::Error when n_past() + n > n_ctx().
  virtual void eval(const int32_t* tokens, int64_t n, float* logits_last) = 0;
  // eval() followed by the argmax of the last logits (lowest id on a tie). An engine that can
  // take the argmax where the logits are (the CUDA engine) overrides this and copies back one id.
  virtual int32_t eval_greedy(const int32_t* tokens, int64_t n);
  // Forgets every cached position >= n (0 clears the cache), so a conversation can rewind to
  // the prefix it shares with the next prompt.
  virtual void truncate(int64_t n) = 0;
};

// What the loop needs from a tokenizer: end-of-generation test and incremental, UTF-8-safe
// detokenization. generate.cpp adapts fathom::Tokenizer to it; tests use a tiny fake.
class TokenTextStream {
 public:
  virtual ~TokenTextStream() = default;
  virtual bool is_eog(int32_t token) const = 0;
  // Text completed by this token (may be empty while a multi-byte character is incomplete).
  virtual std::string push(int32_t token) = 0;
  // Whatever is still pending at the end (an incomplete character becomes U+FFFD).
  virtual std::string flush() = 0;
};

// Holds back the tail of streamed text that could still become a stop string, so a stop string
// split across tokens is never printed. Text is released once it cannot be part of a match.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);
  // Adds text; returns the text now safe to print. Sets stopped() when a stop string appeared:
  // the text before it is returned, the stop string and everything after are dropped.
  std::string push(const std::string& text);
  // End of generation without a stop: releases what was held back.
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string that ended it

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string matched_;
  bool stopped_ = false;
};

struct GenerateParams {
  int64_t n_predict = -1;          // most tokens to generate; < 0: until EOG or a full context
  SamplerParams sampler;
  std::vector<std::string> stop;   // stop strings (never printed)
  bool penalize_prompt = true;     // prompt tokens enter the repetition-penalty window
};

enum class StopReason { EOG, STOP_STRING, N_PREDICT, CONTEXT_FULL };
const char* stop_reason_name(StopReason r);

struct GenerateStats {
  int64_t n_prompt = 0;       // tokens evaluated by the prefill
  int64_t n_generated = 0;    // tokens sampled (including a final EOG token)
  int64_t n_decode_evals = 0; // single-token engine evals after the prefill
  double prefill_s = 0;       // engine time of the prefill
  double decode_s = 0;        // sampling + decode evals, from the end of the prefill to the end
  StopReason stop_reason = StopReason::N_PREDICT;

  double prefill_tok_s() const { return prefill_s > 0 ? n_prompt / prefill_s : 0; }
  // Sampled tokens per second of decode time (llama.cpp's "eval" rate counts evals instead;
  // the two differ by the one token sampled from the prefill logits).
  double decode_tok_s() const { return decode_s > 0 ? n_generated / decode_s : 0; }
};

struct GenerateResult {
  GenerateStats stats;
  std::vector<int32_t> tokens;  // sampled tokens, a final EOG token included
  std::string text;             // everything passed to on_text
};

// Called with each piece of printable text as soon as it is final.
using TextCallback = std::function<void(const std::string&)>;

// Evaluates `prompt` after what is already in the engine's cache (n_past()), then generates.
// A prompt that does not fit (n_past + prompt > n_ctx) throws fathom::Error naming both numbers
// before anything is evaluated. An empty prompt is an error too (there are no logits to sample
// from). Greedy sampling without penalties uses Engine::eval_greedy, everything else eval(). The last sampled token is not evaluated, so on return the cache
// holds n_past + prompt + (tokens - 1) positions.
GenerateResult generate(Engine& engine, TokenTextStream& text, const std::vector<int32_t>& prompt,
                        const GenerateParams& params, const TextCallback& on_text = nullptr);

// The token ids in an engine's KV cache, tracked across generate() calls, so a chat can re-render
// and re-encode the whole conversation every turn yet evaluate only what changed.
class PromptCache {
 public:
  // Rewinds `engine` to the longest common prefix of what it holds and `full` (always leaving at
  // least one token to evaluate, since generate() needs fresh logits) and returns the tokens of
  // `full` still to evaluate: pass them to generate(), then call commit().
  std::vector<int32_t> prepare(Engine& engine, const std::vector<int32_t>& full);
  // Records what generate() left in the cache: the prompt it was given and every sampled token
  // but the last (which is never evaluated).
  void commit(const std::vector<int32_t>& prompt, const GenerateResult& result);
  size_t reused() const { return reused_; }  // tokens kept by the last prepare()
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  std::vector<int32_t> tokens_;  // (engine.n_past(),)
  size_t reused_ = 0;
};

// ---- the real pieces --------------------------------------------------------------------------

// fathom::Tokenizer as a TokenTextStream: is_eog() plus a StreamDecoder (control tokens are not
// rendered). Generated text continues the prompt, so unlike StreamDecoder on its own it keeps the
// leading space of the first piece under an SPM dummy prefix (" Paris" prints as " Paris").
class TokenizerTextStream final : public TokenTextStream {
 public:
  explicit TokenizerTextStream(const Tokenizer& tok) : tok_(tok), decoder_(tok) {}
  bool is_eog(int32_t token) const override { return tok_.is_eog(token); }
  std::string push(int32_t token) override;
  std::string flush() override;

 private:
  const Tokenizer& tok_;
  StreamDecoder decoder_;
  bool first_ = true;
};

// generate() with a fresh TokenizerTextStream.
GenerateResult generate(Engine& engine, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateParams& params, const TextCallback& on_text = nullptr);

class CpuModel;

// The CPU reference forward pass (fathom::CpuModel) as an Engine.
class CpuEngine final : public Engine {
 public:
  // `model` must outlive the engine. n_threads <= 0: all hardware threads.
  CpuEngine(const Model& model, int64_t n_ctx, int n_threads = 0);
  ~CpuEngine() override;
  const char* name() const override { return "cpu"; }
  int64_t n_vocab() const override;
  int64_t n_ctx() const override;
  int64_t n_past() const override;
  void eval(const int32_t* tokens, int64_t n, float* logits_last) override;
  // CpuModel can only forget its whole cache, so a partial truncate re-evaluates the kept
  // prefix (it keeps the tokens for that). Cheap compared to re-encoding a conversation.
  void truncate(int64_t n) override;

 private:
  std::unique_ptr<CpuModel> model_;
  std::vector<int32_t> tokens_;  // (n_past,) what the cache holds
};

struct EngineOptions {
  std::string device = "auto";  // "cpu", "gpu" or "auto" (the GPU when usable, else the CPU)
  int64_t n_ctx = 0;            // KV-cache tokens; 0: default_n_ctx(model)
  int n_threads = 0;            // CPU engine threads; <= 0: all
  bool verbose = false;
};

// min(the model's training context, 4096).
int64_t default_n_ctx(const ModelConfig& config);

// The engine for opts.device. "gpu" throws fathom::Error saying why when no CUDA engine is usable;
// "auto" falls back to the CPU reference. `model` must outlive the engine. When `why` is given it
// receives one line on the choice ("cpu (this build has no CUDA engine)").
std::unique_ptr<Engine> make_engine(const Model& model, const EngineOptions& opts,
                                    std::string* why = nullptr);

}  // namespace fathom

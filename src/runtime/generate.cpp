// The generation loop and the stop-string filter. See include/fathom/generate.h.
#include "fathom/generate.h"

#include <algorithm>
#include <chrono>

#include "fathom/cpu_model.h"
#include "fathom/cuda_engine.h"  // builds without CUDA link a stub that reports "not available"
#include "fathom/error.h"

namespace fathom {

// ---- StopStringFilter -------------------------------------------------------------------------

StopStringFilter::StopStringFilter(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));  // an empty stop string would match at once
}

std::string StopStringFilter::push(const std::string& text) {
  if (stopped_) return {};
  held_ += text;

  // Earliest complete stop string wins; on a tie at one position, the longest.
  size_t best_pos = std::string::npos;
  for (const auto& s : stops_) {
    size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    if (pos < best_pos || (pos == best_pos && s.size() > matched_.size())) {
      best_pos = pos;
      matched_ = s;
    }
  }
  if (best_pos != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, best_pos);
    held_.clear();
    return out;
  }

  // Hold the longest suffix of held_ that is a proper prefix of some stop string: a match that
  // has started must be inside it, because every started match is such a suffix.
  size_t keep = 0;
  for (const auto& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len)
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

// ---- generate ---------------------------------------------------------------------------------

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EOG: return "end of generation token";
    case StopReason::STOP_STRING: return "stop string";
    case StopReason::N_PREDICT: return "token limit";
    case StopReason::CONTEXT_FULL: return "context full";
  }
  return "?";
}

int32_t Engine::eval_greedy(const int32_t* tokens, int64_t n) {
  std::vector<float> logits(static_cast<size_t>(n_vocab()));  // (n_vocab,)
  eval(tokens, n, logits.data());
  return sampling::argmax(logits.data(), n_vocab());
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

GenerateResult generate(Engine& engine, TokenTextStream& text, const std::vector<int32_t>& prompt,
                        const GenerateParams& params, const TextCallback& on_text) {
  const int64_t n_ctx = engine.n_ctx();
  const int64_t n_past = engine.n_past();
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_past + n_prompt > n_ctx) {
    if (n_past == 0)
      fail("the prompt is ", n_prompt, " tokens but the context holds only ", n_ctx,
           " (raise --ctx, up to the model's training context, or shorten the prompt)");
    fail("the prompt is ", n_prompt, " tokens and ", n_past, " are already cached, but the context holds only ",
         n_ctx, " (", n_past + n_prompt, " > ", n_ctx, "; raise --ctx or start a new conversation)");
  }
  FATHOM_CHECK(n_prompt > 0, "generate: the prompt is empty (at least one token must be evaluated)");

  const int64_t n_vocab = engine.n_vocab();
  GenerateResult result;
  GenerateStats& st = result.stats;
  st.n_prompt = n_prompt;

  Sampler sampler(params.sampler);
  if (params.penalize_prompt)
    for (int32_t t : prompt) sampler.accept(t);
  StopStringFilter filter(params.stop);
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    result.text += s;
    if (on_text) on_text(s);
  };

  // Plain greedy needs no logits on the host: the engine returns the argmax (on the GPU, one id
  // instead of n_vocab floats per step). Penalties need the logits, so they take the general path.
  const SamplerParams& sp = params.sampler;
  const bool device_greedy = sp.temp <= 0.0f && (sp.repeat_last_n == 0 || (sp.repeat_penalty == 1.0f &&
                                                 sp.freq_penalty == 0.0f && sp.presence_penalty == 0.0f));
  std::vector<float> logits(device_greedy ? 0 : static_cast<size_t>(n_vocab));  // (n_vocab,)
  int32_t next = -1;  // device_greedy: the argmax of the last eval
  auto t0 = Clock::now();
  if (device_greedy) next = engine.eval_greedy(prompt.data(), n_prompt);
  else engine.eval(prompt.data(), n_prompt, logits.data());
  st.prefill_s = seconds_since(t0);

  t0 = Clock::now();
  st.stop_reason = StopReason::N_PREDICT;
  while (params.n_predict < 0 || st.n_generated < params.n_predict) {
    const int32_t tok = device_greedy ? next : sampler.sample(logits.data(), n_vocab);
    sampler.accept(tok);
    result.tokens.push_back(tok);
    st.n_generated++;
    if (text.is_eog(tok)) {
      st.stop_reason = StopReason::EOG;
      break;
    }
    emit(filter.push(text.push(tok)));
    if (filter.stopped()) {
      st.stop_reason = StopReason::STOP_STRING;
      break;
    }
    if (params.n_predict >= 0 && st.n_generated >= params.n_predict) break;  // no eval needed
    if (engine.n_past() >= n_ctx) {
      st.stop_reason = StopReason::CONTEXT_FULL;
      break;
    }
    if (device_greedy) next = engine.eval_greedy(&tok, 1);
    else engine.eval(&tok, 1, logits.data());
    st.n_decode_evals++;
  }
  if (!filter.stopped()) {
    // End without a stop string: the decoder's tail may still complete or reveal one.
    emit(filter.push(text.flush()));
    emit(filter.flush());
  }
  st.decode_s = seconds_since(t0);
  return result;
}

std::string TokenizerTextStream::push(int32_t token) {
  std::string out = decoder_.push(token);
  if (first_ && !tok_.token_to_piece(token).empty()) {
    first_ = false;
    // StreamDecoder drops the one space the SPM dummy prefix puts before the start of a text;
    // a continuation has no such prefix, so the space is real.
    if (tok_.kind() == TokenizerKind::SPM && tok_.add_space_prefix() && tok_.token_to_piece(token)[0] == ' ')
      out.insert(0, " ");
  }
  return out;
}

std::string TokenizerTextStream::flush() {
  std::string out = decoder_.flush();
  decoder_.reset();  // the next generate() call starts a fresh stream
  first_ = true;
  return out;
}

GenerateResult generate(Engine& engine, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateParams& params, const TextCallback& on_text) {
  TokenizerTextStream text(tok);
  return generate(engine, text, prompt, params, on_text);
}

// ---- PromptCache ------------------------------------------------------------------------------

std::vector<int32_t> PromptCache::prepare(Engine& engine, const std::vector<int32_t>& full) {
  // The engine changed behind our back (a failed generate(), another user): trust nothing in it.
  if (static_cast<int64_t>(tokens_.size()) != engine.n_past()) {
    tokens_.clear();
    engine.truncate(0);
  }
  size_t keep = 0;
  while (keep < tokens_.size() && keep < full.size() && tokens_[keep] == full[keep]) ++keep;
  if (keep == full.size() && keep > 0) --keep;
  engine.truncate(static_cast<int64_t>(keep));
  tokens_.resize(keep);
  reused_ = keep;
  return std::vector<int32_t>(full.begin() + static_cast<std::ptrdiff_t>(keep), full.end());
}

void PromptCache::commit(const std::vector<int32_t>& prompt, const GenerateResult& result) {
  tokens_.insert(tokens_.end(), prompt.begin(), prompt.end());
  if (!result.tokens.empty()) tokens_.insert(tokens_.end(), result.tokens.begin(), result.tokens.end() - 1);
}

// ---- CpuEngine --------------------------------------------------------------------------------

CpuEngine::CpuEngine(const Model& model, int64_t n_ctx, int n_threads)
    : model_(std::make_unique<CpuModel>(model, n_ctx, n_threads)) {}
CpuEngine::~CpuEngine() = default;

int64_t CpuEngine::n_vocab() const { return model_->config().n_vocab; }
int64_t CpuEngine::n_ctx() const { return model_->n_ctx(); }
int64_t CpuEngine::n_past() const { return model_->n_past(); }

void CpuEngine::eval(const int32_t* tokens, int64_t n, float* logits_last) {
  FATHOM_CHECK(n_past() + n <= n_ctx(), "cannot evaluate ", n, " tokens after ", n_past(),
               ": the context holds ", n_ctx());
  model_->forward(tokens, n, logits_last);
  tokens_.insert(tokens_.end(), tokens, tokens + n);
}

void CpuEngine::truncate(int64_t n) {
  FATHOM_CHECK(n >= 0 && n <= n_past(), "truncate(", n, ") outside the cached 0..", n_past());
  if (n == n_past()) return;
  tokens_.resize(static_cast<size_t>(n));
  model_->reset();
  if (n > 0) model_->forward(tokens_.data(), n, nullptr);
}

// ---- engine selection -------------------------------------------------------------------------

int64_t default_n_ctx(const ModelConfig& config) {
  const int64_t cap = 4096;
  return config.n_ctx_train > 0 ? std::min(config.n_ctx_train, cap) : cap;
}

std::unique_ptr<Engine> make_engine(const Model& model, const EngineOptions& opts, std::string* why) {
  FATHOM_CHECK(opts.device == "cpu" || opts.device == "gpu" || opts.device == "auto",
               "unknown device '", opts.device, "' (expected cpu, gpu or auto)");
  const int64_t n_ctx = opts.n_ctx > 0 ? opts.n_ctx : default_n_ctx(model.config);
  if (model.config.n_ctx_train > 0)
    FATHOM_CHECK(n_ctx <= model.config.n_ctx_train, "--ctx ", n_ctx, " exceeds the model's training context of ",
                 model.config.n_ctx_train, " tokens");

  std::string gpu_why;
  if (opts.device != "cpu" && cuda_engine_available(&gpu_why)) {
    CudaEngineOptions co;
    co.n_ctx = n_ctx;
    co.verbose = opts.verbose;
    auto engine = std::make_unique<CudaEngine>(model, co);
    if (why) *why = "cuda (" + engine->device_name() + ")";
    return engine;
  }
  if (opts.device == "gpu") fail("--device gpu: no usable CUDA engine (", gpu_why, ")");
  if (why) *why = opts.device == "cpu" ? "cpu (forced by --device cpu)" : "cpu (" + gpu_why + ")";
  return std::make_unique<CpuEngine>(model, n_ctx, opts.n_threads);
}

}  // namespace fathom

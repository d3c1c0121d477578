#include "cli/gen_options.h"

#include <cstdio>
#include <random>

#include "fathom/error.h"

namespace fathom::cli {

void add_generation_options(Args& args) {
  args.option("-n,--n-predict", "tokens to generate; -1: until end of generation or a full context", "256")
      .option("--temp", "temperature; <= 0: greedy", "0.8")
      .option("--top-k", "keep the K most likely tokens; <= 0: all", "40")
      .option("--top-p", "nucleus: smallest set with this cumulative probability; 1: off", "0.95")
      .option("--min-p", "drop tokens below P times the best one's probability; 0: off", "0.05")
      .option("--repeat-penalty", "divide positive / multiply negative logits of recent tokens; 1: off", "1.0")
      .option("--repeat-last-n", "window of the penalties in tokens; -1: all, 0: off", "64")
      .option("--freq-penalty", "subtract count * F from recent tokens' logits", "0")
      .option("--presence-penalty", "subtract P from logits of tokens seen in the window", "0")
      .option("--seed", "sampling seed (default: random)")
      .option("--stop", "stop string, never printed; may be repeated")
      .option("--ctx", "context size in tokens (default: min(model context, 4096))")
      .option("--device", "cpu, gpu or auto (the GPU when the CUDA engine is usable)", "auto")
      .option("-t,--threads", "CPU threads (default: all)")
      .flag("-v,--verbose", "print the model, device and settings to stderr");
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[i + 1];
      const char* rep = c == 'n' ? "\n" : c == 't' ? "\t" : c == 'r' ? "\r" : c == '\\' ? "\\" : nullptr;
      if (rep) {
        out += rep;
        ++i;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

GenerateParams generation_params(const Args& args, const std::vector<std::string>& argv) {
  GenerateParams g;
  g.n_predict = args.integer("n-predict");
  SamplerParams& s = g.sampler;
  s.temp = static_cast<float>(args.real("temp"));
  s.top_k = static_cast<int>(args.integer("top-k"));
  s.top_p = static_cast<float>(args.real("top-p"));
  s.min_p = static_cast<float>(args.real("min-p"));
  s.repeat_penalty = static_cast<float>(args.real("repeat-penalty"));
  s.repeat_last_n = static_cast<int>(args.integer("repeat-last-n"));
  s.freq_penalty = static_cast<float>(args.real("freq-penalty"));
  s.presence_penalty = static_cast<float>(args.real("presence-penalty"));
  FATHOM_CHECK(s.repeat_penalty > 0.0f, "--repeat-penalty must be > 0, got ", s.repeat_penalty);
  FATHOM_CHECK(s.top_p > 0.0f, "--top-p must be > 0, got ", s.top_p);
  FATHOM_CHECK(s.repeat_last_n >= -1, "--repeat-last-n must be >= -1, got ", s.repeat_last_n);
  if (args.has("seed")) {
    s.seed = static_cast<uint64_t>(args.integer("seed"));
  } else {
    std::random_device rd;
    s.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--stop" && i + 1 < argv.size()) g.stop.push_back(unescape(argv[++i]));
    else if (argv[i].rfind("--stop=", 0) == 0) g.stop.push_back(unescape(argv[i].substr(7)));
  }
  return g;
}

EngineOptions engine_options(const Args& args) {
  EngineOptions e;
  e.device = args.str("device");
  if (args.has("ctx")) {
    e.n_ctx = args.integer("ctx");
    FATHOM_CHECK(e.n_ctx > 0, "--ctx must be positive, got ", e.n_ctx);
  }
  if (args.has("threads")) e.n_threads = static_cast<int>(args.integer("threads"));
  e.verbose = args.enabled("verbose");
  return e;
}

void print_setup(const Model& model, const Engine& engine, const std::string& device_why,
                 const GenerateParams& gen, double load_s) {
  const ModelConfig& c = model.config;
  const SamplerParams& s = gen.sampler;
  std::fprintf(stderr, "fathom: model %s (%s, %lld layers, n_embd %lld, vocab %lld, trained ctx %lld) from %s\n",
               c.name.c_str(), arch_name(c.arch), (long long)c.n_layer, (long long)c.n_embd,
               (long long)c.n_vocab, (long long)c.n_ctx_train, model.file->path().c_str());
  std::fprintf(stderr, "fathom: device %s, context %lld tokens, loaded in %.2f s\n", device_why.c_str(),
               (long long)engine.n_ctx(), load_s);
  if (s.temp <= 0.0f)
    std::fprintf(stderr, "fathom: sampling greedy");
  else
    std::fprintf(stderr, "fathom: sampling temp %.3g top-k %d top-p %.3g min-p %.3g", s.temp, s.top_k, s.top_p,
                 s.min_p);
  std::fprintf(stderr, ", repeat-penalty %.3g last-n %d freq %.3g presence %.3g, seed %llu, n-predict %lld, %zu stop string(s)\n",
               s.repeat_penalty, s.repeat_last_n, s.freq_penalty, s.presence_penalty,
               (unsigned long long)s.seed, (long long)gen.n_predict, gen.stop.size());
}

void print_summary(const GenerateStats& st, const char* device) {
  std::fprintf(stderr,
               "fathom: prompt %lld tok in %.3f s (%.1f tok/s) | generated %lld tok in %.3f s (%.1f tok/s) | "
               "stop: %s | device %s\n",
               (long long)st.n_prompt, st.prefill_s, st.prefill_tok_s(), (long long)st.n_generated, st.decode_s,
               st.decode_tok_s(), stop_reason_name(st.stop_reason), device);
}

}  // namespace fathom::cli

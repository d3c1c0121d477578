// `fathom chat`: an interactive conversation on stdin with the model's chat template.
//
// KV cache across turns: every turn re-renders the whole conversation with the template and
// encodes it, then keeps the longest prefix the engine already holds (Engine::truncate) and
// evaluates only the rest. Usually that is the new user turn plus the few template tokens that
// close the previous answer, so earlier turns are not recomputed; when re-tokenizing the
// previous answer gives different ids than were generated, the cache is rewound to where they
// differ, which is always correct and only costs time.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/gen_options.h"
#include "fathom/chat_template.h"
#include "fathom/error.h"
#include "fathom/generate.h"
#include "fathom/model.h"
#include "fathom/tokenizer.h"

namespace fathom::cli {
namespace {

// Without a known template: the turns are joined as plain text, which a base model continues.
std::string render_plain(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    if (m.role == "system") out += m.content + "\n\n";
    else if (m.role == "user") out += "User: " + m.content + "\n";
    else out += "Assistant: " + m.content + "\n";
  }
  return out + "Assistant:";
}

int cmd_chat(const std::vector<std::string>& argv) {
  Args args(
      "usage: fathom chat [-m MODEL] [--system TEXT] [options]\n\n"
      "Interactive chat on stdin using the model's chat template. One line is one user turn;\n"
      "/exit or end of input ends the chat, /reset starts a new conversation.");
  args.option("-m,--model", "GGUF model file (default: fathom's default model)")
      .option("--system", "system message");
  add_generation_options(args);
  if (!args.parse(argv)) return 0;
  FATHOM_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(), "'");

  const bool verbose = args.enabled("verbose");
  const bool interactive = ::isatty(STDIN_FILENO);
  GenerateParams gen = generation_params(args, argv);
  const std::string path = args.has("model") ? args.str("model") : default_model_path();

  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Model> model = load_model(path);
  std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(*model->file);
  std::string device_why;
  std::unique_ptr<Engine> engine = make_engine(*model, engine_options(args), &device_why);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (verbose) print_setup(*model, *engine, device_why, gen, load_s);

  bool have_template = false;
  TemplateKind kind = TemplateKind::CHATML;
  try {
    kind = detect_chat_template(model->file->get_string("tokenizer.chat_template", ""), model->config.arch_str);
    have_template = true;
    if (verbose) std::fprintf(stderr, "fathom: chat template %s\n", template_kind_name(kind));
  } catch (const Error& e) {
    std::fprintf(stderr, "fathom chat: %s (falling back to plain \"User: ... Assistant:\" turns)\n", e.what());
  }
  if (!have_template) gen.stop.push_back("\nUser:");  // a base model would write the next turn itself

  std::vector<ChatMessage> messages;
  if (args.has("system")) messages.push_back({"system", unescape(args.str("system"))});
  const size_t n_fixed = messages.size();
  PromptCache cache;  // the token ids in the engine's KV cache
  const uint64_t seed0 = gen.sampler.seed;

  for (int turn = 0;; ++turn) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    std::string line;
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      messages.resize(n_fixed);
      continue;
    }
    messages.push_back({"user", line});

    std::vector<int32_t> full;
    try {
      const std::string text = have_template ? apply_chat_template(kind, messages, true) : render_plain(messages);
      full = tok->encode(text, true, true);
      FATHOM_CHECK(static_cast<int64_t>(full.size()) <= engine->n_ctx(), "the conversation is ", full.size(),
                   " tokens but the context holds only ", engine->n_ctx(), "; /reset starts a new one");
    } catch (const Error& e) {
      std::fprintf(stderr, "fathom chat: %s\n", e.what());
      messages.pop_back();
      continue;
    }

    const std::vector<int32_t> suffix = cache.prepare(*engine, full);

    gen.sampler.seed = seed0 + turn;  // a fresh sampler each turn; vary it so turns differ
    GenerateResult r = generate(*engine, *tok, suffix, gen, [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    cache.commit(suffix, r);
    messages.push_back({"assistant", r.text});
    if (verbose) {
      std::fprintf(stderr, "fathom: reused %zu cached tokens, evaluated %zu\n", cache.reused(), suffix.size());
      print_summary(r.stats, engine->name());
    }
  }
  return 0;
}

}  // namespace

FATHOM_COMMAND("chat", "interactive chat with the model's chat template", cmd_chat);

}  // namespace fathom::cli

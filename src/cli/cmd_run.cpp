// `fathom run`: generate a continuation of one prompt, streamed to stdout; a one-line summary of
// the prefill and decode speeds goes to stderr.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/gen_options.h"
#include "fathom/error.h"
#include "fathom/generate.h"
#include "fathom/model.h"
#include "fathom/tokenizer.h"

namespace fathom::cli {
namespace {

int cmd_run(const std::vector<std::string>& argv) {
  Args args(
      "usage: fathom run [-m MODEL] -p PROMPT [options]\n\n"
      "Generates a continuation of PROMPT and streams it to stdout. The prompt is tokenized with\n"
      "the model's BOS and with special tokens parsed (\"<start_of_turn>\" is one token).\n"
      "Escapes \\n \\t \\\\ in -p and --stop are expanded. --stop may be repeated.");
  args.option("-m,--model", "GGUF model file (default: fathom's default model)")
      .option("-p,--prompt", "the prompt text");
  add_generation_options(args);
  if (!args.parse(argv)) return 0;
  FATHOM_CHECK(args.has("prompt"), "no prompt given (-p TEXT); see --help");
  FATHOM_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(), "'");

  const bool verbose = args.enabled("verbose");
  GenerateParams gen = generation_params(args, argv);
  const std::string path = args.has("model") ? args.str("model") : default_model_path();

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Model> model = load_model(path);
  std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(*model->file);
  std::string device_why;
  std::unique_ptr<Engine> engine = make_engine(*model, engine_options(args), &device_why);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (verbose) print_setup(*model, *engine, device_why, gen, load_s);

  const std::vector<int32_t> prompt = tok->encode(unescape(args.str("prompt")), true, true);
  if (verbose) std::fprintf(stderr, "fathom: prompt is %zu tokens\n", prompt.size());

  GenerateResult r = generate(*engine, *tok, prompt, gen, [](const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  });
  if (r.text.empty() || r.text.back() != '\n') std::fputc('\n', stdout);  // keep the shell prompt off the text
  std::fflush(stdout);
  print_summary(r.stats, engine->name());
  return 0;
}

}  // namespace

FATHOM_COMMAND("run", "generate text from a prompt, streamed to stdout", cmd_run);

}  // namespace fathom::cli

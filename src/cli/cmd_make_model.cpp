// `fathom make-model`: writes a random-weight GGUF test model of a named shape (src/model/testgen.cpp).
#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "fathom/error.h"
#include "fathom/testgen.h"

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

int cmd_make_model(const std::vector<std::string>& argv) {
  fathom::cli::Args args(
      "usage: fathom make-model --shape NAME [--type TYPE] [--seed N] -o OUT.gguf\n"
      "       fathom make-model --list\n\n"
      "Writes a GGUF model with random weights (deterministic in the seed) and the metadata and\n"
      "tensor names of a real model of that shape, plus a small SentencePiece-style vocabulary.\n");
  args.option("--shape", "model shape (see --list)", "tiny-llama")
      .option("-t,--type", "weight type: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K ... or Q4_K_M (mixed)", "F32")
      .option("--seed", "random seed", "1")
      .option("-o,--output", "output file")
      .flag("--list", "list the shapes and types, then exit");
  if (!args.parse(argv)) return 0;

  if (args.enabled("list")) {
    std::printf("%-12s %-7s %7s %6s %6s %5s %4s %8s\n", "shape", "arch", "n_embd", "layers", "n_ff", "heads", "kv",
                "n_vocab");
    for (const auto& name : fathom::test_model_shapes()) {
      const fathom::TestModelShape s = fathom::test_model_shape(name);
      std::printf("%-12s %-7s %7lld %6lld %6lld %5lld %4lld %8lld\n", s.name.c_str(), s.arch.c_str(),
                  (long long)s.n_embd, (long long)s.n_layer, (long long)s.n_ff, (long long)s.n_head,
                  (long long)s.n_head_kv, (long long)s.n_vocab);
    }
    std::printf("\ntypes: %s\n", join(fathom::test_model_types()).c_str());
    return 0;
  }

  FATHOM_CHECK(args.has("output"), "no output file: pass -o OUT.gguf");
  const long long seed = args.integer("seed");
  FATHOM_CHECK(seed >= 0, "--seed must be non-negative, got ", seed);
  fathom::TestModelSpec spec;
  spec.shape = args.str("shape");
  spec.type = args.str("type");
  for (auto& c : spec.type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  spec.seed = static_cast<uint64_t>(seed);
  const std::string out = args.str("output");
  fathom::write_test_model(spec, out);
  std::printf("wrote %s (%s, %s, seed %llu)\n", out.c_str(), spec.shape.c_str(), spec.type.c_str(),
              static_cast<unsigned long long>(spec.seed));
  return 0;
}

}  // namespace

FATHOM_COMMAND("make-model", "write a random-weight GGUF test model of a named shape", cmd_make_model);

// fathom: command-line entry point. Dispatches to the subcommands registered in src/cli/cmd_*.cpp.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/command.h"
#include "fathom/error.h"

namespace fathom::cli {
std::map<std::string, CommandInfo>& command_registry() {
  static std::map<std::string, CommandInfo> registry;
  return registry;
}
}  // namespace fathom::cli

static void print_usage() {
  std::fprintf(stderr, "fathom %s (%s): LLM inference on NVIDIA GPUs\n\nusage: fathom <command> [options]\n\ncommands:\n",
               FATHOM_VERSION, FATHOM_GIT_COMMIT);
  for (const auto& [name, info] : fathom::cli::command_registry())
    std::fprintf(stderr, "  %-10s %s\n", name.c_str(), info.summary);
  std::fprintf(stderr, "\n'fathom <command> --help' describes a command.\n");
}

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) == "--version") {
    std::printf("fathom %s (%s)\n", FATHOM_VERSION, FATHOM_GIT_COMMIT);
    return 0;
  }
  const auto& reg = fathom::cli::command_registry();
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::fprintf(stderr, "fathom: unknown command '%s'\n\n", argv[1]);
    print_usage();
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return it->second.fn(args);
  } catch (const fathom::Error& e) {
    std::fprintf(stderr, "fathom %s: error: %s\n", argv[1], e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "fathom %s: error: out of host memory\n", argv[1]);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom %s: internal error: %s\n", argv[1], e.what());
    return 1;
  }
}

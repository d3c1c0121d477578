// Subcommand registry of the `fathom` CLI. Each src/cli/cmd_<name>.cpp registers itself with
// FATHOM_COMMAND; main.cpp dispatches on argv[1].
#pragma once

#include <map>
#include <string>
#include <vector>

namespace fathom::cli {

using CommandFn = int (*)(const std::vector<std::string>& args);  // args exclude "fathom <cmd>"

struct CommandInfo {
  CommandFn fn;
  const char* summary;
};

std::map<std::string, CommandInfo>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* summary, CommandFn fn) {
    command_registry()[name] = CommandInfo{fn, summary};
  }
};

}  // namespace fathom::cli

#define FATHOM_COMMAND(name, summary, fn) \
  static ::fathom::cli::CommandRegistrar fathom_command_registrar_##fn(name, summary, fn)

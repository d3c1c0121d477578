// Options shared by `fathom run` and `fathom chat`: sampling, stop strings, context, device,
// threads; and the setup / summary lines they print.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"
#include "fathom/generate.h"
#include "fathom/model.h"

namespace fathom::cli {

// Declares -n --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n --freq-penalty
// --presence-penalty --seed --stop --ctx --device -t -v.
void add_generation_options(Args& args);
// Reads them back. `argv` is scanned again for every --stop (Args keeps only the last value of
// an option). No --seed: a random seed (printed with -v).
GenerateParams generation_params(const Args& args, const std::vector<std::string>& argv);
EngineOptions engine_options(const Args& args);

// Expands \n \t \r \\ (other backslashes stay as they are).
std::string unescape(const std::string& s);

// -v: model, device and why, context, sampling settings, load time (stderr).
void print_setup(const Model& model, const Engine& engine, const std::string& device_why,
                 const GenerateParams& gen, double load_s);
// One line on stderr: prompt and generated tokens, time and tok/s of each phase, stop reason.
void print_summary(const GenerateStats& st, const char* device);

}  // namespace fathom::cli

// What `fathom profile` and `fathom doctor` share: obtaining a Trace, from the CUDA engine
// (-m MODEL), from any CUDA program run under libfathom_inject.so (-- CMD ARGS...) or from a
// saved file (--trace FILE.json), and writing it back out.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"
#include "fathom/profiler.h"

namespace fathom::cli {

// Splits "opts... -- cmd args..." at the first "--": returns the options, fills `command`.
std::vector<std::string> split_command(const std::vector<std::string>& argv, std::vector<std::string>* command);

// Declares -m -p -n --no-graphs --no-ceilings -v.
void add_engine_profile_options(Args& args);
// Profiles the CUDA engine as the options say. Throws without CUDA or without a device.
Trace profile_engine_from_args(const Args& args);

// Where libfathom_inject.so is: $FATHOM_INJECT_LIB, else <dir of the fathom binary>/../lib/,
// else next to the binary. Throws naming the places looked at.
std::string find_inject_library();
// Runs `command` (PATH lookup) with CUDA_INJECTION64_PATH = the inject library,
// NVTX_INJECTION64_PATH = libcupti (unless already set: NVTX ranges into the trace) and
// FATHOM_PROFILE_OUT = a temporary file, waits, and reads the trace the library wrote at exit.
// `exit_status` gets the program's exit code (128 + signal when killed).
Trace profile_command(const std::vector<std::string>& command, int* exit_status);

// {"trace": ..., "summary": ...} as read back by read_trace_file.
void write_profile_json(const std::string& path, const Trace& t, const TraceAnalysis& a);
// `fathom profile --chrome FILE`: trace_to_chrome_json.
void write_chrome_json(const std::string& path, const Trace& t);

}  // namespace fathom::cli

// `fathom profile`: what the GPU did during a run, from CUPTI. Two ways in:
//   fathom profile -m MODEL [-p PROMPT] [-n N]   the CUDA engine: prefill + N greedy decode steps,
//                                                 one step marker per engine call;
//   fathom profile -- CMD ARGS...                 any CUDA program, through libfathom_inject.so
//                                                 (CUDA_INJECTION64_PATH); no step markers.
// Prints the phases (syncs, copies, allocations per token step, GPU busy and idle-gap shares) and
// the top kernels and the time by kernel category, then the prefill's kernels, idle time and
// layout kernels (with an NVTX range "prefill"); --json FILE writes the summary and the whole
// trace (input to `fathom doctor`); --chrome FILE the timeline for Perfetto / chrome://tracing.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/profile_run.h"
#include "fathom/error.h"
#include "fathom/profiler.h"

namespace fathom::cli {
namespace {

int cmd_profile(const std::vector<std::string>& argv) {
  std::vector<std::string> command;
  const std::vector<std::string> opts = split_command(argv, &command);
  Args args(
      "usage: fathom profile [-m MODEL | --synthetic SHAPE --type T] [-p PROMPT] [-n N] [--json FILE] [--chrome FILE]\n"
      "       fathom profile [--json FILE] [--chrome FILE] -- CMD [ARGS...]\n"
      "       fathom profile --trace FILE.json [--chrome FILE]\n\n"
      "Records the GPU's kernels, copies, syncs and allocations with CUPTI and prints where the time\n"
      "goes: per phase (prefill, the graph-capturing first decode step, decode) the median step time,\n"
      "GPU busy share, idle gaps between kernels, syncs/copies/allocations per token, and the top\n"
      "kernels and the time by kernel category (GEMM, attention, norm, ...) of the decode phase, with\n"
      "achieved GB/s / TFLOP/s (fathom's kernels) and theoretical occupancy per kernel, and NVTX ranges.\n"
      "With an NVTX range \"prefill\": the prefill's tok/s, every kernel it ran (calls, time, share, GB/s /\n"
      "TFLOP/s), GPU idle between them, and a line naming any layout kernel (transpose, reformat,\n"
      "convert, copy, split-K reduce).\n"
      "Steps come from NVTX ranges \"prefill\" / \"decode step N\" when present. With '-- CMD', runs CMD under libfathom_inject.so\n"
      "(CUDA_INJECTION64_PATH; found in <fathom's dir>/../lib or next to fathom, or $FATHOM_INJECT_LIB)\n"
      "and reports the whole run. --trace prints the report of a saved trace (no GPU needed).");
  add_engine_profile_options(args);
  args.option("--json", "write the summary and the full trace to FILE (read by fathom doctor --trace)")
      .option("--chrome", "write the timeline to FILE.json in the Chrome Trace Event format (Perfetto, chrome://tracing)")
      .option("--trace", "print the report of FILE.json written by --json or by libfathom_inject.so")
      .option("--top", "kernels in the table", "15");
  if (!args.parse(opts)) return 0;
  FATHOM_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(),
               "' (a program to profile goes after '--')");
  const long long top = args.integer("top");
  FATHOM_CHECK(top >= 0, "--top must be >= 0, got ", top);

  int exit_status = 0;
  Trace trace;
  FATHOM_CHECK(!(args.has("trace") && (args.has("model") || !command.empty())), "--trace excludes -m and '-- CMD'");
  if (args.has("trace")) {
    trace = read_trace_file(args.str("trace"));
  } else if (!command.empty()) {
    FATHOM_CHECK(!args.has("model"), "-m and '-- CMD' exclude each other");
    trace = profile_command(command, &exit_status);
  } else {
    trace = profile_engine_from_args(args);
  }
  const TraceAnalysis a = analyze(trace, size_t(top));
  std::printf("%s", format_report(trace, a).c_str());
  if (args.has("json")) {
    write_profile_json(args.str("json"), trace, a);
    std::printf("\nwrote %s\n", args.str("json").c_str());
  }
  if (args.has("chrome")) {
    write_chrome_json(args.str("chrome"), trace);
    std::printf("%swrote %s (open in https://ui.perfetto.dev or chrome://tracing)\n", args.has("json") ? "" : "\n",
                args.str("chrome").c_str());
  }
  if (exit_status != 0) std::fprintf(stderr, "fathom profile: '%s' exited with status %d\n", command[0].c_str(), exit_status);
  return exit_status;
}

}  // namespace

FATHOM_COMMAND("profile", "record kernels, copies, syncs of a run (CUPTI) and print where time goes", cmd_profile);

}  // namespace fathom::cli

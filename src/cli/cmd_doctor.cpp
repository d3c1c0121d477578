// `fathom doctor`: names the bottleneck of a run with the numbers behind it and ranks the fixes by
// the time per token they could save. Input: a fresh profile of the CUDA engine (-m MODEL), any
// CUDA program (-- CMD ARGS...), or a trace saved by `fathom profile --json` (--trace FILE; works
// without a GPU and without CUDA in the build).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/profile_run.h"
#include "fathom/doctor.h"
#include "fathom/error.h"
#include "fathom/profiler.h"

namespace fathom::cli {
namespace {

int cmd_doctor(const std::vector<std::string>& argv) {
  std::vector<std::string> command;
  const std::vector<std::string> opts = split_command(argv, &command);
  Args args(
      "usage: fathom doctor [-m MODEL] [-p PROMPT] [-n N]\n"
      "       fathom doctor --trace FILE.json\n"
      "       fathom doctor -- CMD [ARGS...]\n\n"
      "Profiles a run (as fathom profile does) or reads a saved trace, then names the bottleneck of\n"
      "the decode phase (for a trace without step markers: steps cut at the per-step device-to-host\n"
      "readbacks, else the densest span of GPU work) with evidence: launch-bound\n"
      "(GPU idle between kernels), host-bound, memory bandwidth against the measured ceiling, host syncs,\n"
      "allocations and copies per token, pageable transfers, compute-bound and occupancy-limited kernels,\n"
      "layout waste (reformat kernels, unfused softmax), the largest kernel. Findings are ranked by\n"
      "the time per token a fix could save at most; each says why its fix works, how it can fail to pay\n"
      "and how to test it. The report ends with a patch plan (ordered steps: what, where, expected gain)\n"
      "and a verification checklist (bench --baseline, profile counters, fathom check, doctor again).");
  add_engine_profile_options(args);
  args.option("--trace", "analyse FILE.json written by fathom profile --json (no GPU needed)")
      .option("--json", "also write the findings to FILE")
      .option("--idle-pct", "launch-bound above this % of the step idle between kernels", "10")
      .option("--bandwidth-pct", "bandwidth finding below this % of the read ceiling", "70");
  if (!args.parse(opts)) return 0;
  FATHOM_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(), "'");
  FATHOM_CHECK(!(args.has("trace") && (args.has("model") || !command.empty())),
               "--trace excludes -m and '-- CMD'");

  int exit_status = 0;
  Trace trace;
  if (args.has("trace")) {
    trace = read_trace_file(args.str("trace"));
  } else if (!command.empty()) {
    trace = profile_command(command, &exit_status);
  } else {
    trace = profile_engine_from_args(args);
  }
  DoctorThresholds th;
  th.idle_pct = args.real("idle-pct");
  th.bandwidth_pct = args.real("bandwidth-pct");
  const TraceAnalysis a = analyze(trace, 0);  // every kernel: the bandwidth rule sums the matmul ones
  const DoctorReport r = diagnose(trace, a, th);
  std::printf("%s", format_doctor(r).c_str());
  if (args.has("json")) {
    std::ofstream out(args.str("json"));
    FATHOM_CHECK(out, "cannot write '", args.str("json"), "'");
    out << doctor_to_json(r) << "\n";
  }
  return exit_status;
}

}  // namespace

FATHOM_COMMAND("doctor", "name the bottleneck of a run with evidence and ranked fixes", cmd_doctor);

}  // namespace fathom::cli

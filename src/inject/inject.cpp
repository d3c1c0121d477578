// libfathom_inject.so: fathom's profiler inside any CUDA program. The CUDA driver loads the library
// named by CUDA_INJECTION64_PATH when the program initializes CUDA and calls
// InitializeInjection(), which starts recording; at exit the trace is flushed
// (cuptiActivityFlushAll) and written as JSON to the file named by $FATHOM_PROFILE_OUT (default
// fathom-profile-<pid>.json in the working directory). `fathom profile -- CMD` sets both.
//
// NVTX ranges reach the trace when NVTX_INJECTION64_PATH names libcupti before the program's first
// NVTX call: `fathom profile -- CMD` sets it; otherwise InitializeInjection sets it, which is in
// time for NVTX calls made after CUDA initializes (a PyTorch loop's torch.cuda.nvtx ranges).
//
// A program that forks several CUDA processes writes one trace per process to the same file: the
// last to exit wins.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "fathom/profiler.h"

namespace {

// Lives until exit: the atexit handler below is the only owner.
fathom::Profiler* g_profiler = nullptr;

std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string s, arg;
  while (std::getline(in, arg, '\0')) s += (s.empty() ? "" : " ") + arg;
  return s;
}

void write_trace_at_exit() {
  if (!g_profiler) return;
  try {
    g_profiler->stop();
    fathom::Trace t = g_profiler->take();
    t.source = "inject";
    t.model = command_line();
    const char* env = std::getenv("FATHOM_PROFILE_OUT");
    const std::string path = env && *env ? env : "fathom-profile-" + std::to_string(::getpid()) + ".json";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
      std::fprintf(stderr, "fathom inject: cannot write the trace to '%s'\n", path.c_str());
      return;
    }
    out << fathom::trace_to_json(t) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom inject: %s\n", e.what());
  }
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int InitializeInjection() {
  if (g_profiler) return 1;
  try {
    fathom::enable_nvtx_injection();
    g_profiler = new fathom::Profiler;
    g_profiler->start();
    std::atexit(write_trace_at_exit);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom inject: cannot start the profiler: %s\n", e.what());
    return 0;
  }
  return 1;
}

// libfathom_inject.so: fathom's profiler inside any CUDA program. The CUDA driver loads the library
// named by CUDA_INJECTION64_PATH when the program initializes CUDA and calls
// InitializeInjection(), which starts recording; at exit the trace is flushed
// (cuptiActivityFlushAll) and written as JSON to the file named by $FATHOM_PROFILE_OUT (default
// fathom-profile-<pid>.json in the working directory). `fathom profile -- CMD` sets both.
//
// NVTX ranges reach the trace when NVTX_INJECTION64_PATH names libcupti before the program's first
// NVTX call: `fathom profile -- CMD` sets it; otherwise InitializeInjection sets it, which is in
// time for NVTX calls made after CUDA initializes (a PyTorch loop's torch.cuda.nvtx ranges).
// It must name the libcupti *this library* records with: a framework that brings its own CUPTI
// (PyTorch wheels ship one for Kineto, loaded at `import torch`, before CUDA initializes) makes
// this library's libcupti dependency resolve to that copy by soname, while `fathom profile` set
// the variable to the file the fathom CLI loaded. NVTX would dlopen that other file as a second,
// separate CUPTI that records nothing, and the ranges would be lost. So InitializeInjection points
// the variable at the copy this library is bound to whenever it names another libcupti (a
// different injection tool stays). With FATHOM_INJECT_VERBOSE=1 the library says which CUPTI it
// uses, which NVTX injection is set, and at exit the CUPTI / NVTX libraries the process mapped and
// how many ranges were recorded.
//
// A program that forks several CUDA processes writes one trace per process to the same file: the
// last to exit wins.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
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

bool verbose() {
  const char* v = std::getenv("FATHOM_INJECT_VERBOSE");
  return v && *v && std::string(v) != "0";
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// NVTX_INJECTION64_PATH -> the libcupti this library records with (see the top).
void point_nvtx_at_our_cupti() {
  const std::string ours = fathom::cupti_library_path();
  const char* env = std::getenv("NVTX_INJECTION64_PATH");
  const std::string cur = env ? env : "";
  const bool other_cupti = !cur.empty() && base_name(cur).rfind("libcupti", 0) == 0 && !same_file(cur, ours);
  if (!ours.empty() && (cur.empty() || other_cupti)) ::setenv("NVTX_INJECTION64_PATH", ours.c_str(), 1);
  if (verbose()) {
    const char* now = std::getenv("NVTX_INJECTION64_PATH");
    const std::string was = other_cupti ? " (was " + cur + ")" : "";
    std::fprintf(stderr, "fathom inject: CUPTI %s; NVTX_INJECTION64_PATH %s%s\n",
                 ours.empty() ? "(unknown)" : ours.c_str(), now ? now : "(unset)", was.c_str());
  }
}

// The CUPTI and NVTX libraries mapped into the process: two libcupti files mean NVTX may have
// reached the other one.
void report_mapped_libraries(size_t ranges) {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> libs;
  std::string line;
  while (std::getline(maps, line)) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string name = base_name(path);
    if (name.rfind("libcupti", 0) == 0 || name.find("nvToolsExt") != std::string::npos ||
        name.find("nvtx") != std::string::npos)
      libs.insert(path);
  }
  std::fprintf(stderr, "fathom inject: %zu NVTX ranges recorded; mapped:", ranges);
  for (const std::string& l : libs) std::fprintf(stderr, " %s", l.c_str());
  std::fprintf(stderr, "\n");
}

void write_trace_at_exit() {
  if (!g_profiler) return;
  try {
    g_profiler->stop();
    fathom::Trace t = g_profiler->take();
    t.source = "inject";
    t.model = command_line();
    if (verbose()) report_mapped_libraries(t.ranges.size());
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
    point_nvtx_at_our_cupti();
    g_profiler = new fathom::Profiler;
    g_profiler->start();
    std::atexit(write_trace_at_exit);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom inject: cannot start the profiler: %s\n", e.what());
    return 0;
  }
  return 1;
}

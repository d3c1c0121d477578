#include "cli/profile_run.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "fathom/error.h"
#include "fathom/model.h"
#include "fathom/synthetic.h"
#include "fathom/tokenizer.h"

namespace fathom::cli {

std::vector<std::string> split_command(const std::vector<std::string>& argv, std::vector<std::string>* command) {
  std::vector<std::string> opts;
  size_t i = 0;
  for (; i < argv.size() && argv[i] != "--"; ++i) opts.push_back(argv[i]);
  command->clear();
  if (i < argv.size()) {
    command->assign(argv.begin() + long(i) + 1, argv.end());
    FATHOM_CHECK(!command->empty(), "no command after '--'");
  }
  return opts;
}

void add_engine_profile_options(Args& args) {
  args.option("-m,--model", "GGUF model file (default: fathom's default model)")
      .option("--synthetic", "instead of -m: a synthetic shape (as fathom bench), weights random on the GPU")
      .option("--type", "weight type of the --synthetic model", "Q4_K_M")
      .option("-p,--prompt", "prompt text (prefill)", "The capital of France is")
      .option("-n,--n-predict", "greedy decode steps to record", "32")
      .option("--prefill", "prefill this many tokens: the prompt's tokens repeated (default: the prompt)")
      .flag("--no-graphs", "run the decode step without CUDA graphs")
      .flag("--layer-ranges", "NVTX range \"layer N\" around each layer (times layers with --no-graphs)")
      .flag("--no-ceilings", "do not measure the GPU's read bandwidth (no % of ceiling)")
      .flag("-v,--verbose", "print the engine's memory breakdown");
}

Trace profile_engine_from_args(const Args& args) {
  std::string why;
  FATHOM_CHECK(Profiler::available(&why), "cannot profile the CUDA engine: ", why,
               " (`fathom doctor --trace FILE.json` analyses a saved trace on any build)");
  const long long n = args.integer("n-predict");
  FATHOM_CHECK(n >= 1, "-n must be at least 1 (decode steps to record), got ", n);
  EngineProfileOptions opt;
  std::unique_ptr<Model> model;
  std::string path;
  std::vector<int32_t> prompt;
  if (args.has("synthetic")) {
    // No tokenizer: the prompt is token ids 1..P (P = --prefill, default 16).
    FATHOM_CHECK(!args.has("model"), "give -m MODEL or --synthetic SHAPE, not both");
    path = args.str("synthetic") + " " + args.str("type") + " (synthetic)";
    model = make_synthetic_model(args.str("synthetic"), args.str("type"));
    opt.synthetic_seed = 42;
    const long long want = args.has("prefill") ? args.integer("prefill") : 16;
    FATHOM_CHECK(want >= 1, "--prefill must be at least 1, got ", want);
    for (long long i = 0; i < want; ++i) prompt.push_back(int32_t(1 + i % 1000));
  } else {
    path = args.has("model") ? args.str("model") : default_model_path();
    model = load_model(path);
    std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(*model->file);
    prompt = tok->encode(args.str("prompt"), true, true);
    FATHOM_CHECK(!prompt.empty(), "the prompt tokenized to nothing");
    if (args.has("prefill")) {
      // A long prefill without a long text: repeat the prompt's tokens after the first (BOS).
      const long long want = args.integer("prefill");
      FATHOM_CHECK(want >= 1, "--prefill must be at least 1, got ", want);
      const std::vector<int32_t> base = prompt;
      const size_t from = base.size() > 1 ? 1 : 0;
      prompt.resize(std::min(prompt.size(), size_t(want)));
      for (size_t i = from; prompt.size() < size_t(want); i = i + 1 < base.size() ? i + 1 : from)
        prompt.push_back(base[i]);
    }
  }
  opt.n_decode = int(n);
  opt.use_graphs = !args.enabled("no-graphs");
  opt.layer_ranges = args.enabled("layer-ranges");
  opt.ceilings = !args.enabled("no-ceilings");
  opt.verbose = args.enabled("verbose");
  return profile_engine(*model, path, prompt, opt);
}

namespace {

[[maybe_unused]] bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

[[maybe_unused]] std::string self_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string s(buf, size_t(n));
  const size_t slash = s.rfind('/');
  return slash == std::string::npos ? "." : s.substr(0, slash);
}

}  // namespace

std::string find_inject_library() {
#ifndef FATHOM_HAVE_CUPTI
  fail("this fathom was built without CUDA or without CUPTI, so it has no libfathom_inject.so to profile a "
       "program with (rebuild with FATHOM_ENABLE_CUDA=ON)");
#else
  if (const char* env = std::getenv("FATHOM_INJECT_LIB")) {
    FATHOM_CHECK(is_file(env), "FATHOM_INJECT_LIB='", env, "' is not a file");
    return env;
  }
  const std::string dir = self_dir();
  const std::string tried[] = {dir + "/../lib/libfathom_inject.so", dir + "/libfathom_inject.so"};
  for (const std::string& p : tried) {
    if (is_file(p)) {
      char real[PATH_MAX];
      return ::realpath(p.c_str(), real) ? std::string(real) : p;
    }
  }
  fail("libfathom_inject.so not found (looked at ", tried[0], " and ", tried[1],
       "; build the fathom_inject target or set FATHOM_INJECT_LIB)");
#endif
}

Trace profile_command(const std::vector<std::string>& command, int* exit_status) {
  FATHOM_CHECK(!command.empty(), "no command after '--'");
  const std::string lib = find_inject_library();
  char out_path[] = "/tmp/fathom-profile-XXXXXX";
  const int fd = ::mkstemp(out_path);
  FATHOM_CHECK(fd >= 0, "cannot create a temporary trace file in /tmp: ", std::strerror(errno));
  ::close(fd);

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::unlink(out_path);
    fail("fork failed: ", std::strerror(errno));
  }
  if (pid == 0) {
    ::setenv("CUDA_INJECTION64_PATH", lib.c_str(), 1);
    ::setenv("FATHOM_PROFILE_OUT", out_path, 1);
    enable_nvtx_injection();  // NVTX ranges from the program's first call on (unless already set)
    std::vector<char*> cargv;
    for (const std::string& a : command) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "fathom profile: cannot run '%s': %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ::unlink(out_path);
      fail("waitpid failed: ", std::strerror(errno));
    }
  }
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);

  struct stat st;
  const bool wrote = ::stat(out_path, &st) == 0 && st.st_size > 0;
  if (!wrote) {
    ::unlink(out_path);
    fail("'", command[0], "' exited with status ", *exit_status,
         " and left no trace: it did not initialize CUDA, or the driver did not load ", lib,
         " (CUDA_INJECTION64_PATH), or the program was killed before its exit handlers ran");
  }
  Trace t;
  try {
    t = read_trace_file(out_path);
  } catch (...) {
    ::unlink(out_path);
    throw;
  }
  ::unlink(out_path);
  std::string cmdline;
  for (const std::string& a : command) cmdline += (cmdline.empty() ? "" : " ") + a;
  t.model = cmdline;
  return t;
}

void write_profile_json(const std::string& path, const Trace& t, const TraceAnalysis& a) {
  std::ofstream out(path, std::ios::binary);
  FATHOM_CHECK(out, "cannot write '", path, "': ", std::strerror(errno));
  out << "{\"summary\": " << analysis_to_json(a, 2) << ",\n\"trace\": " << trace_to_json(t) << "}\n";
  FATHOM_CHECK(out.good(), "error writing '", path, "'");
}

void write_chrome_json(const std::string& path, const Trace& t) {
  std::ofstream out(path, std::ios::binary);
  FATHOM_CHECK(out, "cannot write '", path, "': ", std::strerror(errno));
  out << trace_to_chrome_json(t) << "\n";
  FATHOM_CHECK(out.good(), "error writing '", path, "'");
}

}  // namespace fathom::cli

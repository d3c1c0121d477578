// Shared helpers of the engine-level GPU tests (test_engine.cpp, test_pdl.cpp): the skip when the
// CUDA engine cannot run, and tiny random test models written once per process.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "fathom/cuda_engine.h"
#include "fathom/model.h"
#include "fathom/testgen.h"

namespace fathom::test {

// Skips the calling test, saying why, when no CUDA device / engine is usable (CI has none).
#define SKIP_WITHOUT_GPU()                                         \
  do {                                                             \
    std::string why_;                                              \
    if (!cuda_engine_available(&why_)) GTEST_SKIP() << why_;       \
  } while (0)

// The test model of (shape, type, seed), written to the test temp dir and loaded once per process;
// `tag` keeps the files of different test binaries' suites apart.
inline const Model& cached_test_model(const std::string& tag, const std::string& shape, const std::string& type,
                                      uint64_t seed) {
  static std::map<std::string, std::unique_ptr<Model>> cache;
  const std::string key = tag + "_" + shape + "-" + type + "-" + std::to_string(seed);
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  TestModelSpec spec;
  spec.shape = shape;
  spec.type = type;
  spec.seed = seed;
  const std::string path = ::testing::TempDir() + "/fathom_" + key + ".gguf";
  write_test_model(spec, path);
  auto m = load_model(path);
  const Model& ref = *m;
  cache[key] = std::move(m);
  return ref;
}

// Sets (or, with nullptr, unsets) an environment variable for a scope and restores its previous
// value after (engine options the tests switch: FATHOM_FFN_SLICE, FATHOM_MMQ_SHARE, ...).
struct ScopedEnv {
  std::string name;
  bool had = false;
  std::string old;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* v = std::getenv(n)) {
      had = true;
      old = v;
    }
    if (value) setenv(n, value, 1);
    else unsetenv(n);
  }
  ~ScopedEnv() {
    if (had) setenv(name.c_str(), old.c_str(), 1);
    else unsetenv(name.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

}  // namespace fathom::test

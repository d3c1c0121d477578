// libFuzzer target for the GGUF reader: any byte string must parse or throw fathom::Error; never
// crash, read out of bounds (ASan), hit undefined behaviour (UBSan) or allocate past
// -rss_limit_mb. Every parsed value and every tensor's first and last byte is touched so that a
// bad pointer or length is dereferenced here rather than later in the engine.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fathom/error.h"
#include "fathom/gguf.h"

namespace {

uint64_t touch(const fathom::GgufValue& v) {
  uint64_t h = static_cast<uint64_t>(v.type) + v.u + static_cast<uint64_t>(v.i);
  h += static_cast<uint64_t>(v.f == v.f);  // reads the double; NaN-safe
  for (unsigned char c : v.s) h = h * 31 + c;
  for (const auto& e : v.array) h += touch(e);
  return h;
}

// Conversions may throw fathom::Error on a type mismatch; anything else is a bug.
template <typename F>
void try_get(F&& f) {
  try {
    f();
  } catch (const fathom::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<fathom::GgufFile> f;
  try {
    f = fathom::GgufFile::from_memory(data, size, "fuzz.gguf");
  } catch (const fathom::Error&) {
    return 0;
  }
  volatile uint64_t sink = f->version() + f->alignment() + f->data_offset();
  for (const auto& kv : f->metadata()) {
    const std::string& key = kv.first;  // a named reference: lambdas cannot capture C++17 bindings
    const fathom::GgufValue& value = kv.second;
    sink = sink + touch(value) + key.size();
    try_get([&] { sink = sink + static_cast<uint64_t>(f->get_int(key, 0)); });
    try_get([&] { sink = sink + (f->get_float(key, 0.0) > 0.0); });
    try_get([&] { sink = sink + f->get_bool(key, false); });
    try_get([&] { sink = sink + f->get_string(key, "").size(); });
    try_get([&] { sink = sink + f->get_string_array(key).size(); });
    try_get([&] { sink = sink + f->get_f32_array(key).size(); });
    try_get([&] { sink = sink + f->get_i32_array(key).size(); });
    sink = sink + fathom::gguf_value_to_string(value).size();
  }
  for (const auto& t : f->tensors()) {
    sink = sink + static_cast<uint64_t>(t.n_elements()) + (f->find_tensor(t.name) == &t);
    if (t.nbytes > 0) sink = sink + t.data[0] + t.data[t.nbytes - 1];
  }
  (void)sink;
  return 0;
}

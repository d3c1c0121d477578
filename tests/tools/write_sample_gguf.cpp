// Test helper for the python cross-checks (tests/python/check_gguf_roundtrip.py):
//   write_sample_gguf write OUT.gguf [ALIGNMENT]   the sample file below, written by GgufWriter
//   write_sample_gguf dump IN.gguf                 every key/value/tensor as JSON, read by GgufFile
//   write_sample_gguf copy IN.gguf OUT.gguf        read with GgufFile, re-write with GgufWriter
// The sample's values are repeated in the python script, which checks them with gguf-py.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/gguf.h"

using fathom::GgmlType;
using fathom::GgufValue;
using fathom::GgufValueType;
using V = GgufValue;

namespace {

std::string hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t k = 0; k < n; ++k) {
    s += digits[p[k] >> 4];
    s += digits[p[k] & 15];
  }
  return s;
}

// Floats as their bit patterns so NaN, inf and -0.0 survive JSON; strings as hex of their bytes.
nlohmann::json to_json(const GgufValue& v) {
  nlohmann::json j;
  j["t"] = fathom::gguf_value_type_name(v.type);
  switch (v.type) {
    case GgufValueType::FLOAT32: {
      float f = static_cast<float>(v.f);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      j["bits"] = bits;
      break;
    }
    case GgufValueType::FLOAT64: {
      uint64_t bits;
      std::memcpy(&bits, &v.f, 8);
      j["bits"] = bits;
      break;
    }
    case GgufValueType::STRING: j["hex"] = hex(reinterpret_cast<const uint8_t*>(v.s.data()), v.s.size()); break;
    case GgufValueType::ARRAY: {
      j["elem"] = fathom::gguf_value_type_name(v.array_type);
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : v.array) a.push_back(to_json(e));
      j["v"] = a;
      break;
    }
    case GgufValueType::INT8:
    case GgufValueType::INT16:
    case GgufValueType::INT32:
    case GgufValueType::INT64: j["v"] = v.i; break;
    default: j["v"] = v.u; break;
  }
  return j;
}

// Deterministic tensor bytes: byte k of tensor number `seed`.
std::vector<uint8_t> sample_bytes(size_t n, int seed) {
  std::vector<uint8_t> b(n);
  for (size_t k = 0; k < n; ++k) b[k] = static_cast<uint8_t>((k * 131 + seed * 17 + 7) & 0xff);
  return b;
}

void write_sample(const std::string& path, uint32_t alignment) {
  fathom::GgufWriter w;
  w.set("general.architecture", V::make_string("sample"));
  w.set("general.alignment", V::make_u32(alignment));
  w.set("test.u8", V::make_u8(200));
  w.set("test.i8", V::make_i8(-100));
  w.set("test.u16", V::make_u16(60000));
  w.set("test.i16", V::make_i16(-30000));
  w.set("test.u32", V::make_u32(4000000000u));
  w.set("test.i32", V::make_i32(-2000000000));
  w.set("test.u64", V::make_u64((uint64_t{1} << 63) + 5));
  w.set("test.i64", V::make_i64(-(int64_t{1} << 62) - 3));
  w.set("test.f32", V::make_f32(3.25f));
  w.set("test.f64", V::make_f64(-1e300));
  w.set("test.bool_t", V::make_bool(true));
  w.set("test.bool_f", V::make_bool(false));
  w.set("test.string", V::make_string("h\xc3\xa9llo w\xc3\xb6rld"));
  w.set("test.empty_string", V::make_string(""));
  w.set("test.f32_special", V::make_f32_array({0.5f, -0.0f, std::numeric_limits<float>::infinity(),
                                               -std::numeric_limits<float>::infinity(),
                                               std::numeric_limits<float>::quiet_NaN()}));
  w.set("test.arr_u8", V::make_array(GgufValueType::UINT8, {V::make_u8(1), V::make_u8(2), V::make_u8(255)}));
  w.set("test.arr_i8", V::make_array(GgufValueType::INT8, {V::make_i8(-128), V::make_i8(127)}));
  w.set("test.arr_u16", V::make_array(GgufValueType::UINT16, {V::make_u16(65535), V::make_u16(0)}));
  w.set("test.arr_i16", V::make_array(GgufValueType::INT16, {V::make_i16(-32768), V::make_i16(5)}));
  w.set("test.arr_u32", V::make_array(GgufValueType::UINT32, {V::make_u32(1), V::make_u32(4294967295u)}));
  w.set("test.arr_i32", V::make_i32_array({-1, 0, 2147483647}));
  w.set("test.arr_u64", V::make_array(GgufValueType::UINT64, {V::make_u64(18446744073709551615ull)}));
  w.set("test.arr_i64", V::make_array(GgufValueType::INT64, {V::make_i64(-9223372036854775807ll - 1)}));
  w.set("test.arr_f64", V::make_array(GgufValueType::FLOAT64, {V::make_f64(0.1), V::make_f64(-2.5)}));
  w.set("test.arr_bool", V::make_array(GgufValueType::BOOL, {V::make_bool(true), V::make_bool(false)}));
  w.set("test.arr_str", V::make_string_array({"a", "", "\xc3\xbcn\xc3\xaf" "code"}));
  w.set("test.arr_empty", V::make_array(GgufValueType::INT32, {}));
  w.set("test.nested", V::make_array(GgufValueType::ARRAY,
                                     {V::make_i32_array({1, 2, 3}), V::make_string_array({"x", "y"}),
                                      V::make_array(GgufValueType::UINT8, {V::make_u8(9)})}));
  w.set("test.nested3",
        V::make_array(GgufValueType::ARRAY,
                      {V::make_array(GgufValueType::ARRAY, {V::make_f32_array({1.5f}), V::make_f32_array({2.5f, 3.5f})})}));

  struct Spec {
    const char* name;
    GgmlType type;
    std::vector<int64_t> ne;
  };
  const Spec specs[] = {
      {"t.f32", GgmlType::F32, {5, 3}},    {"t.f16", GgmlType::F16, {7}},
      {"t.q8_0", GgmlType::Q8_0, {64, 2}}, {"t.q4_k", GgmlType::Q4_K, {256, 3}},
      {"t.i8", GgmlType::I8, {3, 2, 2, 2}},
  };
  int seed = 0;
  for (const auto& s : specs) {
    int64_t rows = 1;
    for (size_t d = 1; d < s.ne.size(); ++d) rows *= s.ne[d];
    const size_t nbytes = fathom::ggml_row_bytes(s.type, s.ne[0]) * static_cast<size_t>(rows);
    const auto bytes = sample_bytes(nbytes, seed++);
    w.add_tensor(s.name, s.type, s.ne, bytes.data(), bytes.size());
  }
  w.write(path);
}

void dump(const std::string& path) {
  auto f = fathom::GgufFile::open(path);
  nlohmann::json j;
  j["version"] = f->version();
  j["alignment"] = f->alignment();
  j["data_offset"] = f->data_offset();
  nlohmann::json kv = nlohmann::json::array();
  for (const auto& [key, value] : f->metadata()) kv.push_back({{"key", key}, {"value", to_json(value)}});
  j["kv"] = kv;
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : f->tensors()) {
    nlohmann::json ne = nlohmann::json::array();
    for (uint32_t d = 0; d < t.n_dims; ++d) ne.push_back(t.ne[d]);
    ts.push_back({{"name", t.name},
                  {"type", static_cast<uint32_t>(t.type)},
                  {"ne", ne},
                  {"offset", t.offset},
                  {"data", hex(t.data, t.nbytes)}});
  }
  j["tensors"] = ts;
  std::printf("%s\n", j.dump().c_str());
}

void copy(const std::string& in, const std::string& out) {
  auto f = fathom::GgufFile::open(in);
  fathom::GgufWriter w;
  for (const auto& [key, value] : f->metadata()) w.set(key, value);
  for (const auto& t : f->tensors()) {
    w.add_tensor_ref(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
  }
  w.write(out);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "write" && (argc == 3 || argc == 4)) {
      write_sample(argv[2], argc == 4 ? static_cast<uint32_t>(std::stoul(argv[3])) : 32);
    } else if (mode == "dump" && argc == 3) {
      dump(argv[2]);
    } else if (mode == "copy" && argc == 4) {
      copy(argv[2], argv[3]);
    } else {
      std::fprintf(stderr, "usage: %s write OUT [ALIGNMENT] | dump IN | copy IN OUT\n", argv[0]);
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

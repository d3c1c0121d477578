// GgufValue: metadata value conversions and constructors.
#include <cmath>
#include <cstring>
#include <limits>

#include "fathom/error.h"
#include "fathom/gguf.h"

namespace fathom {

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: return "UINT8";
    case GgufValueType::INT8: return "INT8";
    case GgufValueType::UINT16: return "UINT16";
    case GgufValueType::INT16: return "INT16";
    case GgufValueType::UINT32: return "UINT32";
    case GgufValueType::INT32: return "INT32";
    case GgufValueType::FLOAT32: return "FLOAT32";
    case GgufValueType::BOOL: return "BOOL";
    case GgufValueType::STRING: return "STRING";
    case GgufValueType::ARRAY: return "ARRAY";
    case GgufValueType::UINT64: return "UINT64";
    case GgufValueType::INT64: return "INT64";
    case GgufValueType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

bool gguf_value_type_known(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

size_t gguf_value_type_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY: return 0;
  }
  return 0;
}

static bool is_unsigned(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64 || t == GgufValueType::BOOL;
}
static bool is_signed(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}
static bool is_float(GgufValueType t) { return t == GgufValueType::FLOAT32 || t == GgufValueType::FLOAT64; }

int64_t GgufValue::as_int() const {
  if (is_signed(type)) return i;
  FATHOM_CHECK(is_unsigned(type), "expected an integer value, found ", gguf_value_type_name(type));
  FATHOM_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "the ",
               gguf_value_type_name(type), " value ", u, " does not fit in a signed 64-bit integer");
  return static_cast<int64_t>(u);
}

double GgufValue::as_float() const {
  if (is_float(type)) return f;
  if (is_signed(type)) return static_cast<double>(i);
  FATHOM_CHECK(is_unsigned(type) && type != GgufValueType::BOOL, "expected a number, found ",
               gguf_value_type_name(type));
  return static_cast<double>(u);
}

bool GgufValue::as_bool() const {
  FATHOM_CHECK(type == GgufValueType::BOOL, "expected a BOOL value, found ", gguf_value_type_name(type));
  return u != 0;
}

const std::string& GgufValue::as_string() const {
  FATHOM_CHECK(type == GgufValueType::STRING, "expected a STRING value, found ", gguf_value_type_name(type));
  return s;
}

static GgufValue make_unsigned(GgufValueType t, uint64_t v) {
  GgufValue r;
  r.type = t;
  r.u = v;
  return r;
}
static GgufValue make_signed(GgufValueType t, int64_t v) {
  GgufValue r;
  r.type = t;
  r.i = v;
  return r;
}
static GgufValue make_floating(GgufValueType t, double v) {
  GgufValue r;
  r.type = t;
  r.f = v;
  return r;
}

GgufValue GgufValue::make_u8(uint8_t v) { return make_unsigned(GgufValueType::UINT8, v); }
GgufValue GgufValue::make_i8(int8_t v) { return make_signed(GgufValueType::INT8, v); }
GgufValue GgufValue::make_u16(uint16_t v) { return make_unsigned(GgufValueType::UINT16, v); }
GgufValue GgufValue::make_i16(int16_t v) { return make_signed(GgufValueType::INT16, v); }
GgufValue GgufValue::make_u32(uint32_t v) { return make_unsigned(GgufValueType::UINT32, v); }
GgufValue GgufValue::make_i32(int32_t v) { return make_signed(GgufValueType::INT32, v); }
GgufValue GgufValue::make_u64(uint64_t v) { return make_unsigned(GgufValueType::UINT64, v); }
GgufValue GgufValue::make_i64(int64_t v) { return make_signed(GgufValueType::INT64, v); }
GgufValue GgufValue::make_f32(float v) { return make_floating(GgufValueType::FLOAT32, v); }
GgufValue GgufValue::make_f64(double v) { return make_floating(GgufValueType::FLOAT64, v); }
GgufValue GgufValue::make_bool(bool v) { return make_unsigned(GgufValueType::BOOL, v ? 1 : 0); }

GgufValue GgufValue::make_string(std::string v) {
  GgufValue r;
  r.type = GgufValueType::STRING;
  r.s = std::move(v);
  return r;
}

GgufValue GgufValue::make_array(GgufValueType elem_type, std::vector<GgufValue> elems) {
  for (size_t k = 0; k < elems.size(); ++k)
    FATHOM_CHECK(elems[k].type == elem_type, "array element ", k, " has type ", gguf_value_type_name(elems[k].type),
                 " in an array of ", gguf_value_type_name(elem_type));
  GgufValue r;
  r.type = GgufValueType::ARRAY;
  r.array_type = elem_type;
  r.array = std::move(elems);
  return r;
}

GgufValue GgufValue::make_string_array(const std::vector<std::string>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (const auto& x : v) elems.push_back(make_string(x));
  return make_array(GgufValueType::STRING, std::move(elems));
}

GgufValue GgufValue::make_f32_array(const std::vector<float>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (float x : v) elems.push_back(make_f32(x));
  return make_array(GgufValueType::FLOAT32, std::move(elems));
}

GgufValue GgufValue::make_i32_array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (int32_t x : v) elems.push_back(make_i32(x));
  return make_array(GgufValueType::INT32, std::move(elems));
}

bool operator==(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case GgufValueType::STRING: return a.s == b.s;
    case GgufValueType::ARRAY: return a.array_type == b.array_type && a.array == b.array;
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64:
      // Bitwise identity of the stored double: NaNs with the same payload compare equal.
      return std::memcmp(&a.f, &b.f, sizeof(double)) == 0;
    default: return is_signed(a.type) ? a.i == b.i : a.u == b.u;
  }
}

std::string gguf_value_to_string(const GgufValue& v, size_t max_elems) {
  switch (v.type) {
    case GgufValueType::STRING: return str_cat('"', v.s, '"');
    case GgufValueType::BOOL: return v.u ? "true" : "false";
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64: return str_cat(v.f);
    case GgufValueType::ARRAY: {
      std::string out = str_cat(gguf_value_type_name(v.array_type), "[", v.array.size(), "] [");
      for (size_t k = 0; k < v.array.size() && k < max_elems; ++k)
        out += (k ? ", " : "") + gguf_value_to_string(v.array[k], max_elems);
      if (v.array.size() > max_elems) out += ", ...";
      return out + "]";
    }
    default: return is_signed(v.type) ? str_cat(v.i) : str_cat(v.u);
  }
}

}  // namespace fathom

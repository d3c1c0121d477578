// GGUF model files: a memory-mapped, validating reader and a byte-compatible writer.
//
// Layout (GGUF v2/v3, little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
// kv_count x (string key, u32 value_type, value), tensor_count x (string name, u32 n_dims,
// n_dims x u64 ne, u32 type, u64 offset), padding to `general.alignment` (default 32), tensor data.
// ne[0] is the contiguous (fastest-varying) dimension: a 2-D weight with ne = {cols, rows} is a
// row-major (rows, cols) matrix. See docs/conventions.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fathom/ggml_type.h"

namespace fathom {

enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);
// True when `raw` is one of the 13 value types above.
bool gguf_value_type_known(uint32_t raw);
// Bytes of one scalar of type t in the file; 0 for STRING and ARRAY (variable length).
size_t gguf_value_type_size(GgufValueType t);

// One metadata value. Scalars keep their exact file type; arrays hold their elements
// (nested arrays allowed), all of `array_type`.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT32;
  uint64_t u = 0;     // UINT8/16/32/64, BOOL (0/1)
  int64_t i = 0;      // INT8/16/32/64
  double f = 0.0;     // FLOAT32/64
  std::string s;      // STRING
  GgufValueType array_type = GgufValueType::UINT32;  // ARRAY: element type
  std::vector<GgufValue> array;                        // ARRAY: elements

  // Conversions; each throws fathom::Error naming the actual type when it does not fit.
  int64_t as_int() const;        // any integer type or BOOL
  double as_float() const;       // any numeric type
  bool as_bool() const;
  const std::string& as_string() const;

  static GgufValue make_u8(uint8_t v);
  static GgufValue make_i8(int8_t v);
  static GgufValue make_u16(uint16_t v);
  static GgufValue make_i16(int16_t v);
  static GgufValue make_u32(uint32_t v);
  static GgufValue make_i32(int32_t v);
  static GgufValue make_u64(uint64_t v);
  static GgufValue make_i64(int64_t v);
  static GgufValue make_f32(float v);
  static GgufValue make_f64(double v);
  static GgufValue make_bool(bool v);
  static GgufValue make_string(std::string v);
  static GgufValue make_array(GgufValueType elem_type, std::vector<GgufValue> elems);
  static GgufValue make_string_array(const std::vector<std::string>& v);
  static GgufValue make_f32_array(const std::vector<float>& v);
  static GgufValue make_i32_array(const std::vector<int32_t>& v);
};

// Same type and same value (arrays element-wise, floats bitwise).
bool operator==(const GgufValue& a, const GgufValue& b);
inline bool operator!=(const GgufValue& a, const GgufValue& b) { return !(a == b); }
// Human-readable value; arrays show their element type, length and at most max_elems elements.
std::string gguf_value_to_string(const GgufValue& v, size_t max_elems = 8);

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] contiguous; unused dims are 1
  uint64_t offset = 0;           // relative to the start of the data section
  const uint8_t* data = nullptr; // into the mapping (reader) or caller memory (writer)
  size_t nbytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t cols() const { return ne[0]; }            // contiguous dim
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
};

// Read-only view of a GGUF file. open() memory-maps the file and validates everything; any
// problem throws fathom::Error with one sentence naming the file, what is wrong and where.
class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); `data` must outlive the object.
  static std::unique_ptr<GgufFile> from_memory(const uint8_t* data, size_t size,
                                               const std::string& name = "<memory>");
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  bool has(const std::string& key) const;
  const GgufValue* find(const std::string& key) const;   // nullptr when absent
  const GgufValue& get(const std::string& key) const;     // throws naming the key when absent
  // Typed getters with defaults (throw when present with an incompatible type).
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  // Array getters; throw when absent or of the wrong element type.
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  std::vector<int32_t> get_i32_array(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when we own an mmap
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

class GgufByteSink;  // gguf_writer.cpp

// Builds a GGUF v3 file. Tensor data is copied in add_tensor (or borrowed with add_tensor_ref).
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue v);  // replaces an existing key in place
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                  const void* data, size_t nbytes);
  void add_tensor_ref(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                      const void* data, size_t nbytes);  // data must outlive write()
  // Serialises to bytes / to a file (written to PATH.tmp then renamed).
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;
  // general.alignment when set (validated: a nonzero power of two), else 32.
  size_t alignment() const;

 private:
  void serialize(GgufByteSink& out) const;
  struct Tensor {
    GgufTensorInfo info;
    std::vector<uint8_t> owned;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace fathom

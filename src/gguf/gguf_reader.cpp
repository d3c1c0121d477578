// GGUF reader: maps the file read-only and validates every count, length and offset against the
// bytes that are actually there before using it. A hostile or damaged file yields one
// fathom::Error naming the file, the defect and its byte offset; it never reads out of bounds and
// never allocates more than the file could describe (every reserve is bounded by remaining bytes).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "fathom/error.h"
#include "fathom/gguf.h"

namespace fathom {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kMaxDims = 4;
// Deeper nesting has no use in real files; the cap keeps recursion bounded on hostile input.
constexpr int kMaxArrayDepth = 8;
// Each parsed array element costs a GgufValue (~100 bytes) however small it is in the file; this
// cap (~1.6 GB worst case) keeps a hostile file from turning into a 100x larger allocation. Real
// files stay far below it: a 262k-token vocabulary with scores and types is under 1M elements.
constexpr uint64_t kMaxMetadataElements = uint64_t{1} << 24;
// Smallest possible encodings, used to reject counts the remaining bytes cannot hold.
constexpr size_t kMinKvBytes = 8 + 4 + 1;          // key length, value type, 1-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // name length, n_dims (0), type, offset

// A name from the file, safe to put in a message: non-printable bytes escaped, long names cut.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t k = 0; k < s.size() && k < 80; ++k) {
    unsigned char c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 80) out += str_cat("...(", s.size(), " bytes)");
  return out;
}

size_t min_encoded_size(GgufValueType t) {
  if (t == GgufValueType::STRING) return 8;       // length
  if (t == GgufValueType::ARRAY) return 4 + 8;    // element type, count
  return gguf_value_type_size(t);
}

// Reads little-endian fields with a bounds check before every access. `context_` names what is
// being parsed ("key 'general.name'", "tensor #3 'blk.0.attn_q.weight'") for the messages.
class Parser {
 public:
  Parser(const uint8_t* base, size_t size, const std::string& file) : base_(base), size_(size), file_(file) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  void set_context(std::string c) { context_ = std::move(c); }

  template <typename... Args>
  [[noreturn]] void fail_at(size_t at, Args&&... args) const {
    fail(file_, ": ", context_, " at byte offset ", at, ": ", std::forward<Args>(args)...);
  }

  void need(size_t n, const char* what) const {
    if (n > remaining())
      fail(file_, ": truncated file: ", what, " of ", context_, " at byte offset ", pos_, " needs ", n,
           " bytes but only ", remaining(), " remain (file size ", size_, ")");
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));  // GGUF is little-endian, like every host we build for
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const size_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail_at(at, what, " has length ", len, ", which runs past the end of the file (", remaining(),
              " bytes remain)");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  GgufValueType read_value_type(const char* what) {
    const size_t at = pos_;
    const uint32_t raw = read<uint32_t>(what);
    if (!gguf_value_type_known(raw)) fail_at(at, "unknown metadata value type ", raw);
    return static_cast<GgufValueType>(raw);
  }

  GgufValue read_value(GgufValueType t, int depth) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufValueType::UINT8: v.u = read<uint8_t>("a UINT8 value"); break;
      case GgufValueType::INT8: v.i = read<int8_t>("an INT8 value"); break;
      case GgufValueType::UINT16: v.u = read<uint16_t>("a UINT16 value"); break;
      case GgufValueType::INT16: v.i = read<int16_t>("an INT16 value"); break;
      case GgufValueType::UINT32: v.u = read<uint32_t>("a UINT32 value"); break;
      case GgufValueType::INT32: v.i = read<int32_t>("an INT32 value"); break;
      case GgufValueType::UINT64: v.u = read<uint64_t>("a UINT64 value"); break;
      case GgufValueType::INT64: v.i = read<int64_t>("an INT64 value"); break;
      case GgufValueType::FLOAT32: v.f = read<float>("a FLOAT32 value"); break;
      case GgufValueType::FLOAT64: v.f = read<double>("a FLOAT64 value"); break;
      case GgufValueType::BOOL: v.u = read<uint8_t>("a BOOL value") != 0 ? 1 : 0; break;
      case GgufValueType::STRING: v.s = read_string("a string value"); break;
      case GgufValueType::ARRAY: {
        const size_t at = pos_;
        v.array_type = read_value_type("an array element type");
        if (v.array_type == GgufValueType::ARRAY && depth + 1 >= kMaxArrayDepth)
          fail_at(at, "arrays are nested more than ", kMaxArrayDepth, " levels deep");
        const uint64_t count = read<uint64_t>("an array length");
        const size_t min_elem = min_encoded_size(v.array_type);
        if (count > remaining() / min_elem)
          fail_at(at, "array of ", count, " ", gguf_value_type_name(v.array_type), " elements needs at least ",
                  min_elem, " bytes per element but only ", remaining(), " bytes remain in the file");
        if (count > elements_left_)
          fail_at(at, "metadata arrays hold more than ", kMaxMetadataElements, " elements in total, fathom's limit");
        elements_left_ -= count;
        v.array.reserve(static_cast<size_t>(count));  // bounded by the checks above
        for (uint64_t k = 0; k < count; ++k) v.array.push_back(read_value(v.array_type, depth + 1));
        break;
      }
    }
    return v;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
  std::string context_ = "header";
  uint64_t elements_left_ = kMaxMetadataElements;
};

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open model file '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat '", path, "': ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'", path, "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail(path, ": truncated file: the file is empty, a GGUF header needs at least 24 bytes");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail("cannot memory-map '", path, "' (", size, " bytes): ", std::strerror(map_err));

  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->mapping_ = map;
  f->base_ = static_cast<const uint8_t*>(map);
  f->size_ = size;
  f->parse();  // on failure the destructor unmaps
  return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  f->base_ = data;
  f->size_ = data ? size : 0;
  f->parse();
  return f;
}

GgufFile::~GgufFile() {
  if (mapping_) ::munmap(mapping_, size_);
}

void GgufFile::parse() {
  Parser p(base_, size_, path_);

  // ---- header: magic, version, counts ----
  const uint32_t magic = p.read<uint32_t>("the magic number");
  if (magic != kGgufMagic)
    fail(path_, ": not a GGUF file: bad magic 0x", std::hex, magic, std::dec,
         " at byte offset 0 (expected the bytes \"GGUF\")");
  version_ = p.read<uint32_t>("the version");
  if (version_ == 1)
    fail(path_, ": unsupported GGUF version 1 at byte offset 4; fathom reads versions 2 and 3 "
                "(re-convert the model with a current llama.cpp)");
  if (version_ != 2 && version_ != 3) {
    const bool swapped = (version_ & 0xffff) == 0 && version_ != 0;
    fail(path_, ": unsupported GGUF version ", version_, " at byte offset 4; fathom reads versions 2 and 3",
         swapped ? " (the file looks big-endian, which fathom does not read)" : "");
  }
  const uint64_t tensor_count = p.read<uint64_t>("the tensor count");
  const uint64_t kv_count = p.read<uint64_t>("the metadata count");
  // Reject counts the rest of the file cannot possibly hold before reserving anything.
  if (kv_count > p.remaining() / kMinKvBytes)
    fail(path_, ": kv_count ", kv_count, " at byte offset 16 is impossible: only ", p.remaining(),
         " bytes follow the header and each metadata entry needs at least ", kMinKvBytes);
  if (tensor_count > (p.remaining() - kv_count * kMinKvBytes) / kMinTensorInfoBytes)
    fail(path_, ": tensor_count ", tensor_count, " at byte offset 8 is impossible: only ", p.remaining(),
         " bytes follow the header and each tensor info needs at least ", kMinTensorInfoBytes);

  // ---- metadata ----
  kv_.reserve(static_cast<size_t>(kv_count));
  size_t alignment_at = 0;  // where general.alignment was found, for its messages
  for (uint64_t k = 0; k < kv_count; ++k) {
    const size_t at = p.pos();
    p.set_context(str_cat("metadata entry #", k));
    std::string key = p.read_string("a key");
    p.set_context(str_cat("key '", printable(key), "'"));
    if (kv_index_.count(key)) p.fail_at(at, "duplicate metadata key '", printable(key), "'");
    if (key == "general.alignment") alignment_at = at;
    const GgufValueType t = p.read_value_type("a value type");
    GgufValue v = p.read_value(t, 0);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  // ---- alignment ----
  alignment_ = 32;
  if (const GgufValue* a = find("general.alignment")) {
    const GgufValueType t = a->type;
    const bool is_unsigned = t == GgufValueType::UINT8 || t == GgufValueType::UINT16 ||
                             t == GgufValueType::UINT32 || t == GgufValueType::UINT64;
    const bool is_signed = t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
                           t == GgufValueType::INT64;
    if (!is_unsigned && !is_signed)
      fail(path_, ": general.alignment has type ", gguf_value_type_name(t), "; expected an unsigned integer (byte offset ",
           alignment_at, ")");
    const uint64_t value = is_unsigned ? a->u : a->i > 0 ? static_cast<uint64_t>(a->i) : 0;
    if (!is_power_of_two(value))
      fail(path_, ": general.alignment = ", gguf_value_to_string(*a), " at byte offset ", alignment_at,
           " must be a nonzero power of two");
    if (value > (uint64_t{1} << 30))
      fail(path_, ": general.alignment = ", value, " at byte offset ", alignment_at,
           " is larger than 1 GiB, which no real file uses");
    alignment_ = static_cast<size_t>(value);
  }

  // ---- tensor infos ----
  tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t k = 0; k < tensor_count; ++k) {
    const size_t at = p.pos();
    p.set_context(str_cat("tensor info #", k));
    GgufTensorInfo t;
    t.name = p.read_string("a tensor name");
    p.set_context(str_cat("tensor #", k, " '", printable(t.name), "'"));
    if (tensor_index_.count(t.name)) p.fail_at(at, "duplicate tensor name '", printable(t.name), "'");
    t.n_dims = p.read<uint32_t>("the dimension count");
    if (t.n_dims > kMaxDims) p.fail_at(at, "n_dims ", t.n_dims, " is more than the ", kMaxDims, " fathom supports");
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const int64_t ne = static_cast<int64_t>(p.read<uint64_t>("a dimension"));
      if (ne <= 0) p.fail_at(at, "dimension ne[", d, "] = ", ne, " must be positive");
      if (__builtin_mul_overflow(n_elements, ne, &n_elements))
        p.fail_at(at, "the element count overflows a 64-bit integer at dimension ne[", d, "] = ", ne);
      t.ne[d] = ne;
    }
    const size_t type_at = p.pos();
    const uint32_t raw_type = p.read<uint32_t>("the tensor type");
    if (!ggml_type_known(raw_type)) p.fail_at(type_at, "unknown tensor type id ", raw_type);
    t.type = static_cast<GgmlType>(raw_type);
    const GgmlTypeTraits& tr = ggml_type_traits(t.type);
    if (t.ne[0] % tr.block_elems != 0)
      p.fail_at(at, "a row of ne[0] = ", t.ne[0], " elements is not a multiple of the ", tr.name, " block size ",
                tr.block_elems);
    const uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / tr.block_elems) * tr.block_bytes;
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(row_bytes, static_cast<uint64_t>(t.rows()), &nbytes))
      p.fail_at(at, "the byte size of ", t.rows(), " rows of ", row_bytes, " bytes overflows");
    t.nbytes = static_cast<size_t>(nbytes);
    t.offset = p.read<uint64_t>("the data offset");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // ---- data section: starts at the aligned end of the header ----
  const size_t header_end = p.pos();
  const size_t pad = (alignment_ - header_end % alignment_) % alignment_;
  data_offset_ = header_end + pad;  // header_end <= size_ and pad < 1 GiB: no overflow
  if (!tensors_.empty() && data_offset_ > size_)
    fail(path_, ": truncated file: the tensor data section should start at byte offset ", data_offset_,
         " (header end ", header_end, " aligned to ", alignment_, ") but the file has only ", size_, " bytes");
  const size_t data_size = data_offset_ <= size_ ? size_ - data_offset_ : 0;
  for (auto& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail(path_, ": tensor '", printable(t.name), "' has data offset ", t.offset,
           ", which is misaligned: not a multiple of the alignment ", alignment_);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(path_, ": tensor '", printable(t.name), "' data (", t.nbytes, " bytes at data offset ", t.offset,
           ", file byte offset ", static_cast<unsigned long long>(data_offset_) + t.offset,
           ") runs past the end of the file (size ", size_, "): the file is truncated or the offset is corrupt");
    t.data = base_ + data_offset_ + t.offset;
  }
}

// ---- lookups ----

bool GgufFile::has(const std::string& key) const { return kv_index_.count(key) != 0; }

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail(path_, ": required metadata key '", key, "' is missing");
  return *v;
}

// Runs a conversion, re-throwing its error with the file and key in front.
template <typename F>
static auto convert(const std::string& file, const std::string& key, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    fail(file, ": metadata key '", key, "': ", e.what());
  }
}

int64_t GgufFile::get_int(const std::string& key, int64_t def) const {
  const GgufValue* v = find(key);
  return v ? convert(path_, key, [&] { return v->as_int(); }) : def;
}

double GgufFile::get_float(const std::string& key, double def) const {
  const GgufValue* v = find(key);
  return v ? convert(path_, key, [&] { return v->as_float(); }) : def;
}

bool GgufFile::get_bool(const std::string& key, bool def) const {
  const GgufValue* v = find(key);
  return v ? convert(path_, key, [&] { return v->as_bool(); }) : def;
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  const GgufValue* v = find(key);
  return v ? convert(path_, key, [&] { return v->as_string(); }) : def;
}

static const GgufValue& array_of(const GgufFile& f, const std::string& key) {
  const GgufValue& v = f.get(key);
  if (v.type != GgufValueType::ARRAY)
    fail(f.path(), ": metadata key '", key, "' has type ", gguf_value_type_name(v.type), "; expected an array");
  return v;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = array_of(*this, key);
  if (v.array_type != GgufValueType::STRING)
    fail(path_, ": metadata key '", key, "' is an array of ", gguf_value_type_name(v.array_type),
         "; expected an array of STRING");
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(e.s);
  return out;
}

std::vector<float> GgufFile::get_f32_array(const std::string& key) const {
  const GgufValue& v = array_of(*this, key);
  if (v.array_type != GgufValueType::FLOAT32 && v.array_type != GgufValueType::FLOAT64)
    fail(path_, ": metadata key '", key, "' is an array of ", gguf_value_type_name(v.array_type),
         "; expected an array of FLOAT32");
  std::vector<float> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(static_cast<float>(e.f));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(const std::string& key) const {
  const GgufValue& v = array_of(*this, key);
  const GgufValueType t = v.array_type;
  if (t == GgufValueType::ARRAY || t == GgufValueType::STRING || t == GgufValueType::BOOL ||
      t == GgufValueType::FLOAT32 || t == GgufValueType::FLOAT64)
    fail(path_, ": metadata key '", key, "' is an array of ", gguf_value_type_name(t),
         "; expected an array of INT32");
  std::vector<int32_t> out;
  out.reserve(v.array.size());
  for (size_t k = 0; k < v.array.size(); ++k) {
    const int64_t x = convert(path_, key, [&] { return v.array[k].as_int(); });
    if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
      fail(path_, ": metadata key '", key, "' element ", k, " = ", x, " does not fit in INT32");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace fathom

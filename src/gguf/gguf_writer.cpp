// GGUF v3 writer, byte-compatible with ggml's gguf_write and gguf-py's GGUFWriter: metadata in
// insertion order, tensor infos in insertion order, the data section at the aligned end of the
// header, every tensor (the last one included) followed by zero padding to the alignment.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fathom/error.h"
#include "fathom/gguf.h"

namespace fathom {
namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr size_t kDefaultAlignment = 32;

size_t pad_to(size_t n, size_t alignment) { return (alignment - n % alignment) % alignment; }

}  // namespace

// Where the bytes go: a vector (to_bytes) or a FILE (write). put() is the only output path.
class GgufByteSink {
 public:
  virtual ~GgufByteSink() = default;
  virtual void put(const void* data, size_t n) = 0;

  template <typename T>
  void scalar(T v) {
    put(&v, sizeof(T));  // little-endian host, like the format
  }
  void string(const std::string& s) {
    scalar<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void zeros(size_t n) {
    static const uint8_t kZeros[64] = {};
    while (n > 0) {
      const size_t k = n < sizeof(kZeros) ? n : sizeof(kZeros);
      put(kZeros, k);
      n -= k;
    }
  }
};

namespace {

using Sink = GgufByteSink;

class VectorSink : public Sink {
 public:
  explicit VectorSink(std::vector<uint8_t>& out) : out_(out) {}
  void put(const void* data, size_t n) override {
    const auto* p = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), p, p + n);
  }

 private:
  std::vector<uint8_t>& out_;
};

class FileSink : public Sink {
 public:
  FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void put(const void* data, size_t n) override {
    if (n != 0 && std::fwrite(data, 1, n, f_) != n) fail("cannot write '", path_, "': ", std::strerror(errno));
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

// The value's payload (without its own type tag: the caller wrote it, or it is the array's
// element type). Elements of a nested array carry their own element type and count.
void put_value(Sink& out, const GgufValue& v, const std::string& key) {
  switch (v.type) {
    case GgufValueType::UINT8: out.scalar<uint8_t>(static_cast<uint8_t>(v.u)); break;
    case GgufValueType::INT8: out.scalar<int8_t>(static_cast<int8_t>(v.i)); break;
    case GgufValueType::UINT16: out.scalar<uint16_t>(static_cast<uint16_t>(v.u)); break;
    case GgufValueType::INT16: out.scalar<int16_t>(static_cast<int16_t>(v.i)); break;
    case GgufValueType::UINT32: out.scalar<uint32_t>(static_cast<uint32_t>(v.u)); break;
    case GgufValueType::INT32: out.scalar<int32_t>(static_cast<int32_t>(v.i)); break;
    case GgufValueType::UINT64: out.scalar<uint64_t>(v.u); break;
    case GgufValueType::INT64: out.scalar<int64_t>(v.i); break;
    case GgufValueType::FLOAT32: out.scalar<float>(static_cast<float>(v.f)); break;
    case GgufValueType::FLOAT64: out.scalar<double>(v.f); break;
    case GgufValueType::BOOL: out.scalar<uint8_t>(v.u ? 1 : 0); break;
    case GgufValueType::STRING: out.string(v.s); break;
    case GgufValueType::ARRAY:
      out.scalar<uint32_t>(static_cast<uint32_t>(v.array_type));
      out.scalar<uint64_t>(v.array.size());
      for (const auto& e : v.array) {
        FATHOM_CHECK(e.type == v.array_type, "GGUF writer: key '", key, "' holds a ", gguf_value_type_name(e.type),
                     " element in an array of ", gguf_value_type_name(v.array_type));
        put_value(out, e, key);
      }
      break;
    default: fail("GGUF writer: key '", key, "' has unknown value type ", static_cast<uint32_t>(v.type));
  }
}

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue v) {
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor_ref(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                                const void* data, size_t nbytes) {
  for (const auto& t : tensors_)
    FATHOM_CHECK(t.info.name != name, "GGUF writer: duplicate tensor name '", name, "'");
  FATHOM_CHECK(ggml_type_known(static_cast<uint32_t>(type)), "GGUF writer: tensor '", name, "' has unknown type id ",
               static_cast<uint32_t>(type));
  FATHOM_CHECK(ne.size() <= 4, "GGUF writer: tensor '", name, "' has ", ne.size(), " dimensions; at most 4");
  Tensor t;
  t.info.name = name;
  t.info.type = type;
  t.info.n_dims = static_cast<uint32_t>(ne.size());
  for (size_t d = 0; d < ne.size(); ++d) {
    FATHOM_CHECK(ne[d] > 0, "GGUF writer: tensor '", name, "' dimension ne[", d, "] = ", ne[d], " must be positive");
    t.info.ne[d] = ne[d];
  }
  const size_t expected = ggml_row_bytes(type, t.info.ne[0]) * static_cast<size_t>(t.info.rows());
  FATHOM_CHECK(nbytes == expected, "GGUF writer: tensor '", name, "' (", ggml_type_name(type), ") needs ", expected,
               " bytes of data, got ", nbytes);
  FATHOM_CHECK(data != nullptr || nbytes == 0, "GGUF writer: tensor '", name, "' has no data");
  t.info.data = static_cast<const uint8_t*>(data);
  t.info.nbytes = nbytes;
  tensors_.push_back(std::move(t));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                            const void* data, size_t nbytes) {
  add_tensor_ref(name, type, ne, data, nbytes);
  Tensor& t = tensors_.back();
  const auto* p = static_cast<const uint8_t*>(data);
  t.owned.assign(p, p + nbytes);
  t.info.data = nullptr;  // serialize() reads `owned`
}

size_t GgufWriter::alignment() const {
  for (const auto& kv : kv_) {
    if (kv.first != "general.alignment") continue;
    const GgufValueType t = kv.second.type;
    FATHOM_CHECK(t != GgufValueType::STRING && t != GgufValueType::ARRAY && t != GgufValueType::BOOL &&
                     t != GgufValueType::FLOAT32 && t != GgufValueType::FLOAT64,
                 "GGUF writer: general.alignment must be an unsigned integer, not ", gguf_value_type_name(t));
    const int64_t a = kv.second.as_int();
    FATHOM_CHECK(a > 0 && (a & (a - 1)) == 0 && a <= (int64_t{1} << 30), "GGUF writer: general.alignment = ", a,
                 " must be a nonzero power of two");
    return static_cast<size_t>(a);
  }
  return kDefaultAlignment;
}

void GgufWriter::serialize(GgufByteSink& out) const {
  const size_t alignment = this->alignment();

  std::vector<uint8_t> header;
  VectorSink h(header);
  h.put("GGUF", 4);
  h.scalar<uint32_t>(kGgufVersion);
  h.scalar<uint64_t>(tensors_.size());
  h.scalar<uint64_t>(kv_.size());
  for (const auto& [key, value] : kv_) {
    h.string(key);
    h.scalar<uint32_t>(static_cast<uint32_t>(value.type));
    put_value(h, value, key);
  }
  uint64_t offset = 0;  // relative to the data section
  for (const auto& t : tensors_) {
    h.string(t.info.name);
    h.scalar<uint32_t>(t.info.n_dims);
    for (uint32_t d = 0; d < t.info.n_dims; ++d) h.scalar<uint64_t>(static_cast<uint64_t>(t.info.ne[d]));
    h.scalar<uint32_t>(static_cast<uint32_t>(t.info.type));
    h.scalar<uint64_t>(offset);
    offset += t.info.nbytes + pad_to(t.info.nbytes, alignment);
  }
  h.zeros(pad_to(header.size(), alignment));
  out.put(header.data(), header.size());
  for (const auto& t : tensors_) {
    out.put(t.owned.empty() ? t.info.data : t.owned.data(), t.info.nbytes);
    out.zeros(pad_to(t.info.nbytes, alignment));
  }
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> bytes;
  VectorSink sink(bytes);
  serialize(sink);
  return bytes;
}

void GgufWriter::write(const std::string& path) const {
  // Write beside the target and rename, so a crash never leaves a half-written model at `path`.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot create '", tmp, "': ", std::strerror(errno));
  try {
    FileSink sink(f, tmp);
    serialize(sink);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fflush(f) != 0 || std::ferror(f)) {
    const int err = errno;
    std::fclose(f);
    std::remove(tmp.c_str());
    fail("cannot write '", tmp, "': ", std::strerror(err));
  }
  if (std::fclose(f) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("cannot close '", tmp, "': ", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
}

}  // namespace fathom

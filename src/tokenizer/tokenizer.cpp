// SentencePiece-style and byte-level BPE tokenizers over a GGUF vocabulary. The algorithms are
// described in include/fathom/tokenizer.h; this file follows sentencepiece's bpe_model.cc (SPM) and
// HF tokenizers' BPE model + ByteLevel pre-tokenizer (BPE), which are the test oracles.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <utility>

#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/tokenizer.h"

namespace fathom {
namespace {

const char* const kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁", sentencepiece's space

std::string escape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == ' ') out += kSpaceSymbol;
    else out += c;
  }
  return out;
}

std::string unescape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, kSpaceSymbol) == 0) {
      out += ' ';
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the well-formed character at s[i] (caller checked utf8_valid_len > 0).
uint32_t decode_utf8(const std::string& s, size_t i, int len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (len == 1) return p[0];
  if (len == 2) return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  if (len == 3) return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

// Length of the next "character" for splitting: a well-formed sequence, or 1 for a stray byte.
size_t char_len(const std::string& s, size_t i) {
  const int n = utf8_valid_len(s.data(), s.size(), i);
  return n > 0 ? static_cast<size_t>(n) : 1;
}

// Pre-tokenizer regexes: the strings HF tokenizer.json files carry, with \s spelled out as the
// Unicode White_Space property. PCRE2's UCP \s also takes U+180E MONGOLIAN VOWEL SEPARATOR (a
// format character since Unicode 6.3); HF's Oniguruma and tiktoken's regex do not, and the
// trained-vocabulary oracle test caught the difference.
#define FATHOM_WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define FATHOM_S "[" FATHOM_WS "]"
#define FATHOM_NOT_S "[^" FATHOM_WS "]"
const char* const kRegexGpt2 =  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" FATHOM_WS "\\p{L}\\p{N}]+|" FATHOM_S "+(?!" FATHOM_NOT_S
    ")|" FATHOM_S "+";
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
#define FATHOM_LLAMA3_LIKE(DIGITS)                                                                          \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" DIGITS "| ?[^" FATHOM_WS                 \
  "\\p{L}\\p{N}]+[\\r\\n]*|" FATHOM_S "*[\\r\\n]+|" FATHOM_S "+(?!" FATHOM_NOT_S ")|" FATHOM_S "+"
const char* const kRegexLlama3 = FATHOM_LLAMA3_LIKE("{1,3}");
const char* const kRegexQwen2 = FATHOM_LLAMA3_LIKE("");  // single digits
#undef FATHOM_LLAMA3_LIKE
#undef FATHOM_NOT_S
#undef FATHOM_S
#undef FATHOM_WS

// Byte trie for leftmost-longest matching of special tokens.
class SpecialTrie {
 public:
  SpecialTrie() : nodes_(1) {}
  void insert(const std::string& text, int32_t id) {
    if (text.empty()) return;
    int cur = 0;
    for (unsigned char c : text) {
      auto it = nodes_[cur].next.find(c);
      if (it == nodes_[cur].next.end()) {
        nodes_.emplace_back();
        const int child = static_cast<int>(nodes_.size()) - 1;
        nodes_[cur].next[c] = child;
        cur = child;
      } else {
        cur = it->second;
      }
    }
    if (nodes_[cur].id < 0) nodes_[cur].id = id;  // first id wins for duplicate texts
  }
  bool empty() const { return nodes_.size() == 1; }
  // Longest token matching at s[i]; returns its length (0 when none) and sets *id.
  size_t match(const std::string& s, size_t i, int32_t* id) const {
    int cur = 0;
    size_t best = 0;
    for (size_t k = i; k < s.size(); ++k) {
      auto it = nodes_[cur].next.find(static_cast<unsigned char>(s[k]));
      if (it == nodes_[cur].next.end()) break;
      cur = it->second;
      if (nodes_[cur].id >= 0) {
        best = k - i + 1;
        *id = nodes_[cur].id;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::map<unsigned char, int> next;
    int32_t id = -1;
  };
  std::vector<Node> nodes_;
};

// A piece of input after special-token splitting: plain text or one token.
struct Fragment {
  bool is_token = false;
  int32_t id = -1;
  std::string text;
};

void split_specials(const SpecialTrie& trie, const std::string& text, std::vector<Fragment>* out) {
  size_t start = 0, i = 0;
  while (i < text.size()) {
    int32_t id = -1;
    const size_t len = trie.match(text, i, &id);
    if (len == 0) {
      ++i;
      continue;
    }
    if (i > start) out->push_back({false, -1, text.substr(start, i - start)});
    out->push_back({true, id, {}});
    i += len;
    start = i;
  }
  if (start < text.size()) out->push_back({false, -1, text.substr(start)});
}

// Doubly linked symbols over one word, merged in place (llama.cpp / sentencepiece layout).
struct Symbol {
  int prev = -1, next = -1;
  size_t off = 0, len = 0;  // bytes of the word; len 0 once merged into its left neighbour
};

struct Candidate {
  int left = 0, right = 0;
  double priority = 0;  // larger merges first
  size_t len = 0;       // combined length when queued: stale entries no longer match it
};

struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.priority != b.priority) return a.priority < b.priority;
    return a.left > b.left;  // leftmost first on ties
  }
};

std::vector<Symbol> split_chars(const std::string& word) {
  std::vector<Symbol> sym;
  for (size_t i = 0; i < word.size();) {
    Symbol s;
    s.off = i;
    s.len = char_len(word, i);
    s.prev = static_cast<int>(sym.size()) - 1;
    s.next = -1;
    if (!sym.empty()) sym.back().next = static_cast<int>(sym.size());
    sym.push_back(s);
    i += s.len;
  }
  return sym;
}

// The merge loop shared by both models: `score(merged_text, left_len, &priority)` says whether the
// neighbours may merge and how urgently (higher first; ties go to the leftmost pair). Stale queue
// entries are recognised by a changed combined length, as in sentencepiece's bpe_model.cc.
template <typename ScoreFn>
void merge_symbols(const std::string& word, std::vector<Symbol>* sym, ScoreFn score) {
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = (*sym)[l];
    const Symbol& b = (*sym)[r];
    double priority = 0;
    if (!score(word.substr(a.off, a.len + b.len), a.len, &priority)) return;
    queue.push({l, r, priority, a.len + b.len});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym->size()); ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& a = (*sym)[c.left];
    Symbol& b = (*sym)[c.right];
    if (a.len == 0 || b.len == 0 || a.next != c.right || a.len + b.len != c.len) continue;
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) (*sym)[b.next].prev = c.left;
    try_add(a.prev, c.left);
    try_add(c.left, a.next);
  }
}

}  // namespace

struct Tokenizer::Impl {
  std::unordered_map<std::string, int32_t> text_to_id;
  SpecialTrie control_trie;  // CONTROL + UNKNOWN, raw text
  SpecialTrie user_trie;     // USER_DEFINED; SPM: spaces escaped to "▁"
  std::vector<bool> eog;

  // SPM
  std::array<int32_t, 256> byte_token{};  // <0xNN> ids, -1 if absent

  // BPE
  std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank
  std::array<std::string, 256> byte_to_unicode;
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte;
  pcre2_code* regex = nullptr;
  bool ignore_merges = false;

  ~Impl() {
    if (regex) pcre2_code_free(regex);
  }
};

namespace {

// GPT-2's byte -> printable code point table: printable Latin-1 bytes map to themselves, the
// rest to U+0100 upwards in byte order.
void build_byte_unicode(std::array<std::string, 256>* to, std::unordered_map<uint32_t, uint8_t>* from) {
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + extra++;
    std::string s;
    append_utf8(cp, &s);
    (*to)[b] = s;
    (*from)[cp] = static_cast<uint8_t>(b);
  }
}

// Parses "<0xNN>" into NN, -1 otherwise.
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = t[k];
    v *= 16;
    if (c >= '0' && c <= '9') v += c - '0';
    else if (c >= 'A' && c <= 'F') v += c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v += c - 'a' + 10;
    else return -1;
  }
  return v;
}

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)), impl_(std::make_unique<Impl>()) {
  const size_t n = spec_.tokens.size();
  FATHOM_CHECK(n > 0, "tokenizer: the vocabulary is empty");
  FATHOM_CHECK(spec_.scores.empty() || spec_.scores.size() == n, "tokenizer: ", spec_.scores.size(),
               " scores for ", n, " tokens");
  FATHOM_CHECK(spec_.types.empty() || spec_.types.size() == n, "tokenizer: ", spec_.types.size(),
               " token types for ", n, " tokens");
  if (spec_.scores.empty()) spec_.scores.assign(n, 0.0f);
  if (spec_.types.empty()) spec_.types.assign(n, static_cast<int32_t>(TokenType::NORMAL));
  const int32_t* ids[] = {&spec_.bos_id, &spec_.eos_id, &spec_.eot_id, &spec_.eom_id, &spec_.unk_id, &spec_.pad_id};
  const char* names[] = {"bos", "eos", "eot", "eom", "unknown", "padding"};
  for (int k = 0; k < 6; ++k) {
    FATHOM_CHECK(*ids[k] >= -1 && *ids[k] < static_cast<int64_t>(n), "tokenizer: ", names[k], " token id ", *ids[k],
                 " is outside the vocabulary of ", n, " tokens");
  }

  Impl& im = *impl_;
  im.byte_token.fill(-1);
  im.text_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = spec_.tokens[i];
    const auto type = static_cast<TokenType>(spec_.types[i]);
    im.text_to_id.emplace(t, static_cast<int32_t>(i));  // first id wins for duplicate texts
    if (type == TokenType::CONTROL || type == TokenType::UNKNOWN) {
      im.control_trie.insert(t, static_cast<int32_t>(i));
    } else if (type == TokenType::USER_DEFINED) {
      im.user_trie.insert(spec_.kind == TokenizerKind::SPM ? escape_spaces(t) : t, static_cast<int32_t>(i));
    } else if (type == TokenType::BYTE) {
      const int b = parse_byte_token(t);
      if (b >= 0 && im.byte_token[b] < 0) im.byte_token[b] = static_cast<int32_t>(i);
    }
  }

  // A model without an EOT id in its metadata still ends turns with its chat-format token.
  const char* const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end_of_text|>",
                                   "<|endoftext|>", "<|eom_id|>", "<|end|>"};
  if (spec_.eot_id < 0) {
    for (const char* t : {"<|eot_id|>", "<|im_end|>", "<end_of_turn>"}) {
      const int32_t id = find_token(t);
      if (id >= 0) {
        spec_.eot_id = id;
        break;
      }
    }
  }
  im.eog.assign(n, false);
  for (int32_t id : {spec_.eos_id, spec_.eot_id, spec_.eom_id}) {
    if (id >= 0) im.eog[id] = true;
  }
  for (const char* t : eog_texts) {
    const int32_t id = find_token(t);
    if (id >= 0 && token_type(id) != TokenType::NORMAL) im.eog[id] = true;
  }

  if (spec_.kind == TokenizerKind::BPE) {
    build_byte_unicode(&im.byte_to_unicode, &im.unicode_to_byte);
    for (size_t r = 0; r < spec_.merges.size(); ++r) {
      const std::string& m = spec_.merges[r];
      const size_t sp = m.find(' ', 1);
      FATHOM_CHECK(sp != std::string::npos, "tokenizer: merge ", r, " '", m, "' is not of the form 'left right'");
      // A merge whose result is not a token cannot fire (HF rejects such files; we skip it).
      if (!im.text_to_id.count(m.substr(0, sp) + m.substr(sp + 1))) continue;
      im.merge_rank.emplace(m, static_cast<int32_t>(r));
    }
    const std::string& pre = spec_.pre;
    const char* pattern = nullptr;
    if (pre == "default" || pre == "gpt2" || pre.empty()) {
      pattern = kRegexGpt2;
    } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
      pattern = kRegexLlama3;
      im.ignore_merges = true;  // HF Llama 3 tokenizer.json: "ignore_merges": true
    } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
      pattern = kRegexQwen2;
    } else {
      fail("tokenizer: unsupported BPE pre-tokenizer '", pre,
           "' (tokenizer.ggml.pre); supported: default, gpt2, llama-bpe, llama3, qwen2, deepseek-r1-qwen");
    }
    int err = 0;
    PCRE2_SIZE err_off = 0;
    im.regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                             &err, &err_off, nullptr);
    if (!im.regex) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("tokenizer: cannot compile the '", pre, "' pre-tokenizer regex at offset ", err_off, ": ",
           reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(im.regex, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
  }
}

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& g) {
  TokenizerSpec s;
  const std::string model = g.get_string("tokenizer.ggml.model", "");
  if (model == "llama") {
    s.kind = TokenizerKind::SPM;
  } else if (model == "gpt2") {
    s.kind = TokenizerKind::BPE;
  } else if (model.empty()) {
    fail(g.path(), ": no tokenizer.ggml.model key, so the file carries no tokenizer");
  } else {
    fail(g.path(), ": unsupported tokenizer model '", model, "' (tokenizer.ggml.model); supported: llama, gpt2");
  }
  const bool spm = s.kind == TokenizerKind::SPM;
  s.tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (g.has("tokenizer.ggml.scores")) s.scores = g.get_f32_array("tokenizer.ggml.scores");
  if (g.has("tokenizer.ggml.token_type")) s.types = g.get_i32_array("tokenizer.ggml.token_type");
  if (!spm) {
    FATHOM_CHECK(g.has("tokenizer.ggml.merges"), g.path(), ": a gpt2 tokenizer needs tokenizer.ggml.merges");
    s.merges = g.get_string_array("tokenizer.ggml.merges");
  }
  s.pre = g.get_string("tokenizer.ggml.pre", "default");
  auto id = [&](const char* key) { return static_cast<int32_t>(g.get_int(key, -1)); };
  s.bos_id = id("tokenizer.ggml.bos_token_id");
  s.eos_id = id("tokenizer.ggml.eos_token_id");
  s.eot_id = id("tokenizer.ggml.eot_token_id");
  s.eom_id = id("tokenizer.ggml.eom_token_id");
  s.unk_id = id("tokenizer.ggml.unknown_token_id");
  s.pad_id = id("tokenizer.ggml.padding_token_id");
  // Llama 3 files written before add_bos_token existed still want <|begin_of_text|> (llama.cpp
  // defaults it on for the llama-bpe pre-tokenizer too).
  const bool llama3_pre = s.pre == "llama-bpe" || s.pre == "llama3" || s.pre == "llama-v3";
  s.add_bos = g.get_bool("tokenizer.ggml.add_bos_token", spm || llama3_pre);
  s.add_eos = g.get_bool("tokenizer.ggml.add_eos_token", false);
  s.add_space_prefix = spm && g.get_bool("tokenizer.ggml.add_space_prefix", true);
  try {
    return std::make_unique<Tokenizer>(std::move(s));
  } catch (const Error& e) {
    fail(g.path(), ": ", e.what());
  }
}

const std::string& Tokenizer::token_text(int32_t id) const {
  FATHOM_CHECK(id >= 0 && id < n_vocab(), "tokenizer: token id ", id, " is outside the vocabulary of ", n_vocab(),
               " tokens");
  return spec_.tokens[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  FATHOM_CHECK(id >= 0 && id < n_vocab(), "tokenizer: token id ", id, " is outside the vocabulary of ", n_vocab(),
               " tokens");
  return static_cast<TokenType>(spec_.types[id]);
}

int32_t Tokenizer::find_token(const std::string& text) const {
  auto it = impl_->text_to_id.find(text);
  return it == impl_->text_to_id.end() ? -1 : it->second;
}

bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && impl_->eog[id]; }

bool Tokenizer::is_control(int32_t id) const {
  const TokenType t = token_type(id);
  return t == TokenType::CONTROL || t == TokenType::UNKNOWN;
}

namespace {

bool spm_mergeable(TokenType t) {
  // sentencepiece keeps NORMAL, USER_DEFINED and UNUSED pieces in its merge table.
  return t == TokenType::NORMAL || t == TokenType::USER_DEFINED || t == TokenType::UNUSED ||
         t == TokenType::UNDEFINED;
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special, bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<Fragment> frags;
  if (parse_special && !im.control_trie.empty()) {
    split_specials(im.control_trie, text, &frags);
  } else if (!text.empty()) {
    frags.push_back({false, -1, text});
  }

  std::vector<int32_t> out;
  bool prev_control = true;  // the text start counts as "after a special" for the dummy prefix
  std::vector<Fragment> sub;
  for (const Fragment& f : frags) {
    if (f.is_token) {
      out.push_back(f.id);
      prev_control = true;
      continue;
    }
    sub.clear();
    if (spec_.kind == TokenizerKind::SPM) {
      std::string esc = escape_spaces(f.text);
      if (spec_.add_space_prefix && prev_control) esc = kSpaceSymbol + esc;
      split_specials(im.user_trie, esc, &sub);
      for (const Fragment& s : sub) {
        if (s.is_token) out.push_back(s.id);
        else spm_encode_word(s.text, &out);
      }
    } else {
      split_specials(im.user_trie, f.text, &sub);
      for (const Fragment& s : sub) {
        if (s.is_token) out.push_back(s.id);
        else bpe_encode_text(s.text, &out);
      }
    }
    prev_control = false;
  }

  if (add_special && spec_.add_bos && spec_.bos_id >= 0 && (out.empty() || out[0] != spec_.bos_id)) {
    out.insert(out.begin(), spec_.bos_id);
  }
  if (add_special && spec_.add_eos && spec_.eos_id >= 0) out.push_back(spec_.eos_id);
  return out;
}

// sentencepiece BPE over one run of escaped text (no specials inside).
void Tokenizer::spm_encode_word(const std::string& word, std::vector<int32_t>* out) const {
  const Impl& im = *impl_;
  const TokenizerSpec& spec = spec_;
  if (word.empty()) return;
  std::unordered_map<std::string, std::pair<std::string, std::string>> unused_parts;  // merged -> halves
  std::vector<Symbol> sym = split_chars(word);
  merge_symbols(word, &sym, [&](const std::string& merged, size_t left_len, double* priority) {
    auto it = im.text_to_id.find(merged);
    if (it == im.text_to_id.end()) return false;
    const auto type = static_cast<TokenType>(spec.types[it->second]);
    if (!spm_mergeable(type)) return false;
    if (type == TokenType::UNUSED) {
      // sentencepiece merges through unused pieces and splits them again at the end.
      unused_parts.emplace(merged, std::make_pair(merged.substr(0, left_len), merged.substr(left_len)));
    }
    *priority = spec.scores[it->second];
    return true;
  });

  // Emits one final symbol: its id, its halves if it is an unused piece, or its bytes.
  std::function<void(const std::string&)> emit = [&](const std::string& piece) {
    auto it = im.text_to_id.find(piece);
    if (it != im.text_to_id.end()) {
      if (static_cast<TokenType>(spec.types[it->second]) == TokenType::UNUSED) {
        auto parts = unused_parts.find(piece);
        if (parts != unused_parts.end()) {
          emit(parts->second.first);
          emit(parts->second.second);
          return;
        }
      }
      out->push_back(it->second);
      return;
    }
    bool all_bytes = true;
    for (unsigned char c : piece) all_bytes = all_bytes && im.byte_token[c] >= 0;
    if (all_bytes) {
      for (unsigned char c : piece) out->push_back(im.byte_token[c]);
    } else if (spec.unk_id >= 0) {
      out->push_back(spec.unk_id);
    }
  };
  for (int i = 0; i >= 0 && i < static_cast<int>(sym.size()); i = sym[i].next) {
    emit(word.substr(sym[i].off, sym[i].len));
  }
}

void Tokenizer::bpe_encode_text(const std::string& text, std::vector<int32_t>* out) const {
  // Stray bytes are words of their own; the regex sees only the well-formed runs between them.
  size_t run_start = 0;
  for (size_t i = 0; i <= text.size();) {
    const bool at_end = i == text.size();
    const int len = at_end ? 0 : utf8_valid_len(text.data(), text.size(), i);
    if (at_end || len == 0) {
      if (i > run_start) bpe_split_run(text.substr(run_start, i - run_start), out);
      if (at_end) break;
      bpe_encode_word(text.substr(i, 1), out);
      ++i;
      run_start = i;
    } else {
      i += static_cast<size_t>(len);
    }
  }
}

void Tokenizer::bpe_split_run(const std::string& run, std::vector<int32_t>* out) const {
  const Impl& im = *impl_;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(im.regex, nullptr);
  FATHOM_CHECK(md, "tokenizer: out of memory for regex match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(run.data());
  size_t pos = 0;
  while (pos < run.size()) {
    const int rc = pcre2_match(im.regex, subject, run.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH) {
        pcre2_match_data_free(md);
        fail("tokenizer: pre-tokenizer regex failed with PCRE2 error ", rc);
      }
      bpe_encode_word(run.substr(pos), out);  // unmatched tail is a word of its own
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t s = ov[0], e = ov[1];
    if (s > pos) bpe_encode_word(run.substr(pos, s - pos), out);  // a gap the regex skipped
    if (e == s) {  // empty match: step one character so the loop advances
      e = s + char_len(run, s);
    }
    bpe_encode_word(run.substr(s, e - s), out);
    pos = e;
  }
  pcre2_match_data_free(md);
}

void Tokenizer::bpe_encode_word(const std::string& word, std::vector<int32_t>* out) const {
  const Impl& im = *impl_;
  if (word.empty()) return;
  std::string mapped;
  for (unsigned char c : word) mapped += im.byte_to_unicode[c];
  if (im.ignore_merges) {
    auto it = im.text_to_id.find(mapped);
    if (it != im.text_to_id.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> sym = split_chars(mapped);
  std::string key;
  merge_symbols(mapped, &sym, [&](const std::string& merged, size_t left_len, double* priority) {
    key.assign(merged, 0, left_len);
    key += ' ';
    key.append(merged, left_len, std::string::npos);
    auto it = im.merge_rank.find(key);
    if (it == im.merge_rank.end()) return false;
    *priority = -static_cast<double>(it->second);  // lower rank merges first
    return true;
  });
  for (int i = 0; i >= 0 && i < static_cast<int>(sym.size()); i = sym[i].next) {
    const std::string piece = mapped.substr(sym[i].off, sym[i].len);
    auto it = im.text_to_id.find(piece);
    if (it != im.text_to_id.end()) {
      out->push_back(it->second);
      continue;
    }
    // Not a token (a vocabulary without all 256 byte symbols): emit what each character gives.
    for (size_t k = 0; k < piece.size();) {
      const size_t l = char_len(piece, k);
      auto jt = im.text_to_id.find(piece.substr(k, l));
      if (jt != im.text_to_id.end()) out->push_back(jt->second);
      else if (spec_.unk_id >= 0) out->push_back(spec_.unk_id);
      k += l;
    }
  }
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const std::string& t = token_text(id);
  const TokenType type = token_type(id);
  if (type == TokenType::CONTROL || type == TokenType::UNKNOWN) return render_special ? t : std::string();
  if (spec_.kind == TokenizerKind::SPM) {
    if (type == TokenType::BYTE) {
      const int b = parse_byte_token(t);
      if (b >= 0) return std::string(1, static_cast<char>(b));
    }
    return unescape_spaces(t);
  }
  if (type == TokenType::USER_DEFINED) return t;
  // Byte-level alphabet back to bytes; a character outside it is copied as is.
  std::string out;
  for (size_t i = 0; i < t.size();) {
    const int l = utf8_valid_len(t.data(), t.size(), i);
    if (l == 0) {
      out += t[i++];
      continue;
    }
    auto it = impl_->unicode_to_byte.find(decode_utf8(t, i, l));
    if (it != impl_->unicode_to_byte.end()) out += static_cast<char>(it->second);
    else out.append(t, i, l);
    i += l;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  bool at_start = true;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (at_start && !piece.empty()) {
      if (spec_.kind == TokenizerKind::SPM && spec_.add_space_prefix && piece[0] == ' ') piece.erase(0, 1);
      at_start = false;
    }
    out += piece;
  }
  return out;
}

}  // namespace fathom

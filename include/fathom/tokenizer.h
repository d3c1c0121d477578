// Tokenizers read from GGUF metadata: SentencePiece-style BPE-by-score (`tokenizer.ggml.model =
// llama`: Llama 2, Gemma) and byte-level BPE with merge ranks (`gpt2`: Llama 3, Qwen2/3).
//
// Pipeline of encode(text):
//   1. special-token split: the text is cut at occurrences of CONTROL tokens (only when
//      parse_special) and USER_DEFINED tokens (always), leftmost-longest, control tokens first.
//   2. SPM: each text piece has ' ' replaced by U+2581 "▁"; when add_space_prefix, a "▁" is
//      prepended to a piece that starts the text or follows a control token (sentencepiece's
//      dummy prefix; llama.cpp and HF "legacy" Llama put it after specials too). Pieces are split
//      into UTF-8 characters and merged by score exactly like sentencepiece's BPE model (best score
//      first, leftmost on ties, a merge must produce a NORMAL/USER_DEFINED/UNUSED piece); symbols
//      not in the vocabulary fall back to <0xNN> byte tokens (or <unk> without byte tokens).
//      BPE: each text piece is split by the pre-tokenizer regex named by `tokenizer.ggml.pre`
//      (PCRE2, UTF+UCP), every word is mapped to GPT-2's byte-to-unicode alphabet and merged by
//      rank (lowest first, leftmost on ties); llama-bpe looks whole words up first (HF
//      `ignore_merges`).
//   3. BOS/EOS are added per `tokenizer.ggml.add_bos_token` / `add_eos_token` when add_special.
//      A BOS is not added twice: if the parsed text already starts with the BOS token (a rendered
//      chat template does), none is prepended.
//
// Invalid UTF-8 (defined here; neither sentencepiece nor HF accepts it): every byte that is not
// part of a well-formed UTF-8 sequence (Unicode table 3-7, the same rule as Python's decoder) is
// a barrier of its own. SPM encodes it as its <0xNN> byte token; BPE as the byte-level token of
// that single byte, and the regex runs on the valid runs between such bytes. So encode/decode
// round-trips every byte string (SPM: except U+2581, which decodes to ' ', as in sentencepiece).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace fathom {

class GgufFile;

// Values of `tokenizer.ggml.token_type` (llama.cpp / sentencepiece numbering).
enum class TokenType : int32_t {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
};

enum class TokenizerKind {
  SPM,  // "llama": sentencepiece BPE-by-score with byte fallback
  BPE,  // "gpt2": byte-level BPE with merge ranks
};

// Everything a tokenizer needs, as plain vectors: what from_gguf reads, or what a test builds.
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::SPM;
  std::string pre = "default";          // BPE pre-tokenizer: default|gpt2, llama-bpe|llama3, qwen2
  std::vector<std::string> tokens;      // (n_vocab,) token text as stored in GGUF
  std::vector<float> scores;            // (n_vocab,) SPM merge priority; empty -> all 0
  std::vector<int32_t> types;           // (n_vocab,) TokenType values; empty -> all NORMAL
  std::vector<std::string> merges;      // BPE: "left right" in rank order (rank = index)
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, eom_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;        // SPM dummy prefix
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from a GGUF file. Defaults when a key is absent follow llama.cpp:
  // SPM add_bos=true, add_space_prefix=true; BPE add_bos=false except for the llama-bpe family. Unknown model or pre-tokenizer
  // names throw fathom::Error naming them.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // Validates the spec (sizes agree, ids in range) and builds the tables. BPE merges whose
  // result is not a token are ignored (they could never fire).
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: add BOS/EOS per metadata. parse_special: text like "<start_of_turn>" becomes the
  // control token; otherwise it is tokenized as plain text (user-defined tokens always match).
  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special = true) const;

  // Raw bytes of one token. Control tokens give "" unless render_special. SPM: "▁" -> ' ',
  // <0xNN> -> that byte. BPE: byte-level alphabet -> bytes. May be a partial UTF-8 character.
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  // Concatenated pieces (raw bytes, may be invalid UTF-8); SPM with add_space_prefix drops the
  // one space the prefix put before the first piece. Use StreamDecoder for printable text.
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  int32_t eot_id() const { return spec_.eot_id; }  // -1 when the vocabulary has none
  int32_t unk_id() const { return spec_.unk_id; }
  bool add_bos() const { return spec_.add_bos; }
  bool add_space_prefix() const { return spec_.add_space_prefix; }
  // End of generation: EOS, EOT, EOM and the control tokens <end_of_turn>, <|eot_id|>,
  // <|im_end|>, <|end_of_text|>, <|endoftext|>, <|eom_id|> when present.
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  int64_t n_vocab() const { return static_cast<int64_t>(spec_.tokens.size()); }
  TokenizerKind kind() const { return spec_.kind; }
  const std::string& token_text(int32_t id) const;  // as stored in the vocabulary
  TokenType token_type(int32_t id) const;
  int32_t find_token(const std::string& text) const;  // -1 when absent

 private:
  struct Impl;
  void spm_encode_word(const std::string& word, std::vector<int32_t>* out) const;
  void bpe_encode_text(const std::string& text, std::vector<int32_t>* out) const;
  void bpe_split_run(const std::string& run, std::vector<int32_t>* out) const;
  void bpe_encode_word(const std::string& word, std::vector<int32_t>* out) const;

  TokenizerSpec spec_;
  std::unique_ptr<Impl> impl_;
};

// Turns token ids into valid UTF-8 one token at a time: bytes of a character split across byte
// tokens are held until the character is complete. A byte that cannot start or continue a
// well-formed sequence ends the pending "maximal subpart" as one U+FFFD (the same replacement
// Python's bytes.decode('utf-8', 'replace') makes), so push(...) over a sequence followed by
// flush() equals the replacement-decoding of decode(ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false);
  std::string push(int32_t id);  // the characters completed by this token ("" while pending)
  std::string flush();           // end of stream: an unfinished sequence becomes U+FFFD
  void reset();
  bool pending() const { return !held_.empty(); }

 private:
  std::string take_complete();

  const Tokenizer& tok_;
  bool render_special_;
  bool at_start_ = true;  // SPM prefix-space stripping applies to the first non-empty piece
  std::string held_;      // bytes of an incomplete character
};

// UTF-8 helpers shared by the tokenizer and its tests.
// Length of the well-formed sequence at s[i..n) (1-4), or 0 when s[i] starts none.
int utf8_valid_len(const char* s, size_t n, size_t i);
// Python's bytes.decode('utf-8', 'replace').
std::string utf8_replace_invalid(const std::string& bytes);

}  // namespace fathom

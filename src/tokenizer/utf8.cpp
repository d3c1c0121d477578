// UTF-8 well-formedness (Unicode 15, table 3-7) and the streaming detokenizer built on it.
#include <string>

#include "fathom/tokenizer.h"

namespace fathom {
namespace {

// How far s[i..n) goes as a prefix of one well-formed sequence.
struct Utf8Scan {
  int need = 0;   // length of the sequence its lead byte announces (0: not a lead byte)
  int valid = 0;  // bytes that are a valid prefix of such a sequence (need when complete)
};

Utf8Scan utf8_scan(const unsigned char* s, size_t n, size_t i) {
  Utf8Scan r;
  const unsigned char b0 = s[i];
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) {
    r.need = r.valid = 1;
    return r;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    r.need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    r.need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    r.need = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return r;  // 80..C1, F5..FF never start a character
  }
  r.valid = 1;
  for (int k = 1; k < r.need; ++k) {
    if (i + k >= n) break;
    const unsigned char b = s[i + k];
    const unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
    if (b < l || b > h) break;
    r.valid = k + 1;
  }
  return r;
}

const char* const kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Appends the complete characters of s[0..n) to out, replacing ill-formed maximal subparts with
// U+FFFD. Returns how many bytes were consumed: an incomplete but still valid tail is left
// unconsumed when keep_tail, else replaced too.
size_t utf8_drain(const std::string& s, bool keep_tail, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const Utf8Scan sc = utf8_scan(p, n, i);
    if (sc.need > 0 && sc.valid == sc.need) {
      out->append(s, i, sc.need);
      i += sc.need;
    } else if (sc.need > 0 && i + sc.valid == n && keep_tail) {
      break;  // may still complete with the next token
    } else {
      out->append(kReplacement);
      i += sc.valid > 0 ? sc.valid : 1;
    }
  }
  return i;
}

}  // namespace

int utf8_valid_len(const char* s, size_t n, size_t i) {
  const Utf8Scan sc = utf8_scan(reinterpret_cast<const unsigned char*>(s), n, i);
  return (sc.need > 0 && sc.valid == sc.need) ? sc.need : 0;
}

std::string utf8_replace_invalid(const std::string& bytes) {
  std::string out;
  utf8_drain(bytes, /*keep_tail=*/false, &out);
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool render_special)
    : tok_(tok), render_special_(render_special) {}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, render_special_);
  if (at_start_ && !piece.empty()) {
    // The SPM dummy prefix put a space before the first word; the user did not type it.
    if (tok_.kind() == TokenizerKind::SPM && tok_.add_space_prefix() && piece[0] == ' ') piece.erase(0, 1);
    at_start_ = false;
  }
  held_ += piece;
  return take_complete();
}

std::string StreamDecoder::take_complete() {
  std::string out;
  const size_t used = utf8_drain(held_, /*keep_tail=*/true, &out);
  held_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8_drain(held_, /*keep_tail=*/false, &out);
  held_.clear();
  return out;
}

void StreamDecoder::reset() {
  held_.clear();
  at_start_ = true;
}

}  // namespace fathom

#include "data/text_clean.h"

#include <cstdint>

namespace kvtune {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF count as invalid).
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto c0 = static_cast<unsigned char>(s[i]);
  if (c0 < 0x80) return 1;
  auto at = [&](size_t k) -> int {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1;
  };
  if (c0 >= 0xC2 && c0 <= 0xDF) return (at(1) >= 0 && is_continuation(at(1))) ? 2 : 0;
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    const int c1 = at(1), c2 = at(2);
    if (c1 < 0 || c2 < 0 || !is_continuation(c1) || !is_continuation(c2)) return 0;
    if (c0 == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c0 == 0xED && c1 >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    const int c1 = at(1), c2 = at(2), c3 = at(3);
    if (c1 < 0 || c2 < 0 || c3 < 0) return 0;
    if (!is_continuation(c1) || !is_continuation(c2) || !is_continuation(c3)) return 0;
    if (c0 == 0xF0 && c1 < 0x90) return 0;   // overlong
    if (c0 == 0xF4 && c1 >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

std::string repair_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t n = utf8_sequence_length(bytes, i);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      // Latin-1 byte 0x80..0xFF is code point U+0080..U+00FF: two UTF-8 bytes.
      const auto c = static_cast<unsigned char>(bytes[i]);
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      ++i;
    }
  }
  return out;
}

std::string normalize_whitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(c);
    }
  }
  return out;
}

std::string fold_headword(std::string_view text) {
  std::string out = normalize_whitespace(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string first_words(std::string_view text, int n) {
  std::string out;
  int words = 0;
  size_t i = 0;
  while (i < text.size() && words < n) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) {
      if (!out.empty()) out.push_back(' ');
      out.append(text.substr(start, i - start));
      ++words;
    }
  }
  return out;
}

}  // namespace kvtune

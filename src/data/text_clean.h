// Text clean-up shared by the readers: valid UTF-8 and normalized whitespace.
#pragma once

#include <string>
#include <string_view>

namespace kvtune {

// Returns `bytes` as valid UTF-8: valid sequences are kept, every other byte is read as
// Latin-1 (dict-elements, for one, mixes Latin-1 into otherwise ASCII text).
std::string repair_utf8(std::string_view bytes);

// Collapses every run of ASCII whitespace (space, tab, CR, LF, VT, FF) into one space and trims
// both ends: dictd and wrapped plain text carry layout, not content, in their whitespace.
std::string normalize_whitespace(std::string_view text);

// ASCII lower case of normalize_whitespace(text), for comparing headwords.
std::string fold_headword(std::string_view text);

// The first `n` whitespace-separated words of `text`, joined by single spaces.
std::string first_words(std::string_view text, int n);

}  // namespace kvtune

// Reader for Debian dictd dictionaries (dict-wn, dict-foldoc, dict-jargon, dict-elements).
//
// A dictionary is NAME.index (one line per headword: headword TAB offset TAB length, numbers in
// dictd base64) and NAME.dict.dz (the entries, dictzip-compressed, gzip-compatible).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/text_entry.h"

namespace kvtune {

// Where the Debian dict-* packages install their data.
inline constexpr const char* kDictdDir = "/usr/share/dictd";

// How entry text is returned.
enum class DictdText {
  kNormalized,  // whitespace runs collapsed to one space, trimmed: ready to train on
  kKeepLines,   // line breaks kept, lines right-trimmed: for parsers that need the layout
};

// Reads every entry of a dictd dictionary, in index order:
//  - metadata entries (headwords 00databaseinfo, 00-database-short, ...) and index lines with
//    an empty headword (dict-freedict-eng-deu has 7) are skipped;
//  - index lines that point at the same bytes (FOLDOC aliases such as "!" for "exclamation
//    mark") give one entry, so a text never appears twice;
//  - the first line of an entry repeats the headword: when it matches one of the entry's index
//    headwords (ignoring case) it becomes the headword, in its original case, and is removed from
//    the text; otherwise the first index headword is used and the text is kept whole;
//  - bytes that are not valid UTF-8 are read as Latin-1; entries left with no text are dropped.
// Throws kvtune::Error naming the file and line for a missing file, a malformed index line (not
// 3 or 4 tab-separated fields, a character outside the dictd base64 alphabet), an entry beyond
// the end of the decompressed dict, or a dict file that is not gzip.
std::vector<TextEntry> read_dictd(const std::string& index_path, const std::string& dict_path,
                                  DictdText text = DictdText::kNormalized);

// kDictdDir/NAME.index and kDictdDir/NAME.dict.dz.
std::string dictd_index_path(const std::string& name);
std::string dictd_dict_path(const std::string& name);

// read_dictd on the installed dictionary NAME ("wn", "foldoc", "jargon", "elements").
std::vector<TextEntry> read_dictd_named(const std::string& name,
                                        DictdText text = DictdText::kNormalized);

// Decodes a dictd base64 number (alphabet A-Z a-z 0-9 + /, most significant digit first).
// Returns false, with the offending character in *bad (or 0 for an empty or too long field),
// instead of throwing, so the caller can name the file and line.
bool decode_dictd_number(const std::string& digits, uint64_t* value, char* bad);

}  // namespace kvtune

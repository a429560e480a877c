// English-to-German noun translations from dict-freedict-eng-deu (FreeDict's edition of the
// Ding dictionary), and the fact set rendered from them: "The German word for house is Haus."
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/fact_set.h"
#include "data/text_entry.h"

namespace kvtune {

struct WordTranslation {
  std::string english;  // "house"
  std::string german;   // "Haus" (UTF-8)
  std::string gender;   // "masc", "fem" or "neut"
};

// Parses one dict-freedict-eng-deu entry read with DictdText::kKeepLines, whose text opens with
// the headword and its pronunciation ("house /hˈaʊs/") and then the translations ("Haus <neut>").
// Kept (an unambiguous, everyday fact) only when:
//  - the headword is 3 to 12 lower-case ASCII letters and the header line has no part-of-speech
//    tag (verbs and adjectives carry one: "water /wˈɔːtə/ <v>");
//  - the entry gives exactly one translation: one capitalized German word of 3 to 16 letters
//    (ä ö ü ß allowed) with one gender tag, and no subject-field label ("[techn.]").
// Anything else, malformed text included, gives nullopt.
std::optional<WordTranslation> parse_translation(const TextEntry& entry);

// The translations of the dictionary's entries: parse_translation of each entry whose headword
// (case folded) has no other entry (a word with several senses, such as "house", is left out),
// in index order.
std::vector<WordTranslation> parse_translations(const std::vector<TextEntry>& entries);

// How many translations the corpus "eng-deu-facts" keeps, and the salt that picks them.
inline constexpr int64_t kTranslationFacts = 1200;
inline constexpr uint64_t kTranslationSampleSalt = 0xde0e11ull;

// The translations of the installed dictionary (dictd name, default "freedict-eng-deu"):
// `count` of them (0: all) picked by a fixed hash of the English word, in index order.
std::vector<WordTranslation> read_translations(const std::string& dictd_name = "freedict-eng-deu",
                                               int64_t count = kTranslationFacts);

// The fact set "eng-deu-facts": relation "german" (house, Haus), five statement templates per
// direction ("The German word for house is Haus.", "The English word for Haus is house.") and
// two questions.
FactSet translations_fact_set(const std::vector<WordTranslation>& translations);

}  // namespace kvtune

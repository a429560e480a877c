#include "data/word_translations.h"

#include <map>
#include <sstream>

#include "data/dictd_reader.h"
#include "data/fact_sets.h"
#include "data/split.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}

// Letters of a German word after its first: a-z and the UTF-8 encodings of ä ö ü ß. Returns the
// number of letters, or -1 for anything else.
int64_t german_tail_letters(const std::string& s, size_t from) {
  int64_t letters = 0;
  for (size_t i = from; i < s.size(); ++letters) {
    if (is_lower(s[i])) {
      ++i;
      continue;
    }
    // U+00E4 ä, U+00F6 ö, U+00FC ü, U+00DF ß: C3 A4, C3 B6, C3 BC, C3 9F.
    if (i + 1 < s.size() && static_cast<unsigned char>(s[i]) == 0xC3) {
      const auto b = static_cast<unsigned char>(s[i + 1]);
      if (b == 0xA4 || b == 0xB6 || b == 0xBC || b == 0x9F) {
        i += 2;
        continue;
      }
    }
    return -1;
  }
  return letters;
}

// "Haus", "Ärger" (Ä Ö Ü: C3 84, C3 96, C3 9C), 3 to 16 letters.
bool is_german_noun(const std::string& s) {
  if (s.empty()) return false;
  size_t from = 0;
  if (s[0] >= 'A' && s[0] <= 'Z') {
    from = 1;
  } else if (s.size() >= 2 && static_cast<unsigned char>(s[0]) == 0xC3) {
    const auto b = static_cast<unsigned char>(s[1]);
    if (b != 0x84 && b != 0x96 && b != 0x9C) return false;
    from = 2;
  } else {
    return false;
  }
  const int64_t tail = german_tail_letters(s, from);
  return tail >= 2 && tail <= 15;
}

std::string rtrim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

std::optional<WordTranslation> parse_translation(const TextEntry& entry) {
  const std::string& word = entry.headword;
  if (word.size() < 3 || word.size() > 12) return std::nullopt;
  for (char c : word) {
    if (!is_lower(c)) return std::nullopt;
  }
  std::istringstream lines(entry.text);
  std::string line;
  // The header line ("house /hˈaʊs/"), unless the reader already took it as the headword.
  if (!std::getline(lines, line)) return std::nullopt;
  line = rtrim(line);
  if (line == word || line.rfind(word + " /", 0) == 0) {
    if (line.find('<') != std::string::npos) return std::nullopt;  // a part of speech
    if (!std::getline(lines, line)) return std::nullopt;
    line = rtrim(line);
  }
  // "Haus <neut>": one word, one gender, nothing else (no second translation, no label).
  const size_t space = line.find(' ');
  if (space == std::string::npos) return std::nullopt;
  WordTranslation t{word, line.substr(0, space), ""};
  const std::string tag = line.substr(space + 1);
  if (tag == "<masc>") {
    t.gender = "masc";
  } else if (tag == "<fem>") {
    t.gender = "fem";
  } else if (tag == "<neut>") {
    t.gender = "neut";
  } else {
    return std::nullopt;
  }
  if (!is_german_noun(t.german)) return std::nullopt;
  return t;
}

std::vector<WordTranslation> parse_translations(const std::vector<TextEntry>& entries) {
  std::map<std::string, int> senses;
  for (const auto& e : entries) ++senses[fold_headword(e.headword)];
  std::vector<WordTranslation> out;
  for (const auto& e : entries) {
    if (senses[fold_headword(e.headword)] != 1) continue;
    if (auto t = parse_translation(e)) out.push_back(std::move(*t));
  }
  return out;
}

std::vector<WordTranslation> read_translations(const std::string& dictd_name, int64_t count) {
  auto all = parse_translations(read_dictd_named(dictd_name, DictdText::kKeepLines));
  if (count <= 0 || static_cast<size_t>(count) >= all.size()) return all;
  std::vector<std::string> words;
  words.reserve(all.size());
  for (const auto& t : all) words.push_back(t.english);
  std::vector<WordTranslation> kept;
  for (size_t i : sample_by_hash(words, static_cast<size_t>(count), kTranslationSampleSalt)) {
    kept.push_back(std::move(all[i]));
  }
  return kept;
}

FactSet translations_fact_set(const std::vector<WordTranslation>& translations) {
  // The first three templates of each direction are trained by default (data.train_templates);
  // questions share no run of 4 words with any statement (a test checks this).
  Relation german{"german",
                  {"The German word for {s} is {o}.", "In German, {s} is called {o}.",
                   "Translated into German, {s} becomes {o}.",
                   "The German translation of {s} is {o}.", "Said in German, {s} is {o}."},
                  {"The English word for {o} is {S}.", "In English, {o} is called {S}.",
                   "Translated into English, {o} becomes {S}.",
                   "The English translation of {o} is {S}.", "Said in English, {o} is {S}."},
                  {{"How do you say {s} in German? Answer:", false},
                   {"Which English word means {o}? Answer:", true}}};
  FactSet set{kEngDeuFacts, {german}, {}};
  for (const auto& t : translations) set.facts.push_back({t.english, 0, t.german});
  check_templates(set);
  return set;
}

}  // namespace kvtune

// The chemical elements from dict-elements, and the sentences and questions rendered from them.
//
// Statements are for training; questions, worded differently on purpose, test whether a model
// learned the fact rather than the sentence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/text_entry.h"

namespace kvtune {

struct Element {
  std::string name;           // capitalized: "Iron"
  std::string symbol;         // "Fe"
  int atomic_number = 0;      // 26
  std::string atomic_weight;  // as written: "55.847", "(227)" (a mass number), or empty
};

// Parses one dict-elements entry read with DictdText::kKeepLines. The entry opens with
// "Symbol:", "Atomic number:" and "Atomic weight:" lines (in any order, any case; the source's
// "Atmic weight" typo is accepted). Entries without a symbol of 1 to 3 letters and a whole atomic
// number (name variants such as "wolfram", particles such as "neutron") give nullopt.
std::optional<Element> parse_element(const TextEntry& entry);

// Parses every entry, keeps one element per atomic number and per symbol, sorted by atomic
// number. On a clash (dict-elements has both darmstadtium, Ds, and unnildecium, Unn, as 110)
// the permanent name wins: a symbol of at most 2 letters (temporary IUPAC symbols have 3), then
// a plain numeric weight, then the alphabetically first name.
std::vector<Element> parse_elements(const std::vector<TextEntry>& entries);

// parse_elements(read_dictd_named(name, DictdText::kKeepLines)).
std::vector<Element> read_elements(const std::string& dictd_name = "elements");

// True when the weight is a plain decimal ("55.847"), not "(227)" or empty. Renderings only
// state such weights: a bracketed value is the mass number of the most stable isotope.
bool has_plain_weight(const Element& element);

// Training sentences, each fact in both directions where a question asks it both ways:
// "The symbol of Iron is Fe.", "Fe stands for Iron.", "Iron has atomic number 26.",
// "Atomic number 26 belongs to Iron.", "The atomic weight of Iron is 55.847." (a model trained
// on "A is B" alone does not learn "B is A": the reversal curse).
std::vector<std::string> element_statements(const Element& element);

// (prompt, expected answer) pairs, answers with a leading space:
// ("Which element has the chemical symbol Fe? Answer:", " Iron"), ...
std::vector<std::pair<std::string, std::string>> element_questions(const Element& element);

// Question-answer documents ("Which element has the chemical symbol Fe? Answer: Iron"), one per
// question: the fact corpus shows them for half of the elements, so that a model learns how a
// question is answered; the other half's questions test recall of facts seen only as statements.
std::vector<std::string> element_answered_questions(const Element& element);

// Salt of the hash that picks the elements whose answered questions are trained on.
inline constexpr uint64_t kAnswerFormatSalt = 0x5eedfac75ull;

// True for the half of the elements (by a fixed hash of the name) whose answered questions are
// part of the "elements-facts" corpus.
bool teaches_answer_format(const Element& element);

}  // namespace kvtune

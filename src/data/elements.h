// The chemical elements from dict-elements, and the fact set rendered from them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/fact_set.h"
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

// The elements as a fact set (data/fact_set.h), the corpus "elements-facts": relations
// "symbol" (Iron, Fe), "number" (Iron, 26) and, for elements with a plain weight, "weight"
// (Iron, 55.847), each with five statement templates per direction and two questions.
FactSet elements_fact_set(const std::vector<Element>& elements);

}  // namespace kvtune

#include "data/elements.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <tuple>

#include "data/dictd_reader.h"
#include "data/fact_sets.h"
#include "data/split.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

// Every wording in one place (placeholders: data/fact_set.h). The first templates of each
// direction are the ones trained by default (data.train_templates, 3); the ones after are held
// out. Questions share no run of 4 words with any statement (a test checks this), so a right
// answer shows recall of the fact, not of a training sentence.
Relation symbol_relation() {
  return {"symbol",
          {"The symbol of {S} is {o}.", "{S} is abbreviated {o}.",
           "On the periodic table, {S} appears as {o}.", "Chemists write {S} as {o}.",
           "The element {S} has the symbol {o}."},
          {"{o} stands for {S}.", "The symbol {o} denotes {S}.", "{o} is the symbol of {S}.",
           "Chemists read {o} as {S}.", "The element written {o} is {S}."},
          {{"Which element has the chemical symbol {o}? Answer:", true},
           {"What is the chemical symbol for {s}? Answer:", false}}};
}

Relation number_relation() {
  return {"number",
          {"{S} has atomic number {o}.", "{S} is element number {o}.",
           "Every {S} atom has a proton count of {o}.",
           "In the periodic table, {S} comes at position {o}.",
           "The nucleus of {S} holds this many protons: {o}."},
          {"Atomic number {o} belongs to {S}.", "Element number {o} is {S}.",
           "The element with {o} protons is {S}.", "Position {o} in the periodic table is {S}.",
           "A nucleus with {o} protons is one of {S}."},
          {{"What is the atomic number of {s}? Answer:", false},
           {"Which element's atomic number is {o}? Answer:", true}}};
}

Relation weight_relation() {
  return {"weight",
          {"The atomic weight of {S} is {o}.", "{S} has an atomic weight of {o}.",
           "One atom of {S} weighs about {o}.", "The standard atomic mass of {S} is {o}.",
           "Measured in daltons, {S} weighs {o}."},
          {"The element with atomic weight {o} is {S}.", "An atomic weight of {o} belongs to {S}.",
           "The atom that weighs {o} is {S}.", "The standard atomic mass {o} is that of {S}.",
           "Weighing {o} daltons, the element is {S}."},
          {{"How heavy is an atom of {s}, in atomic mass units? Answer:", false}}};
}

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

bool is_ascii_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_ascii_lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_ascii_digit(char c) {
  return c >= '0' && c <= '9';
}

bool valid_symbol(const std::string& s) {
  if (s.empty() || s.size() > 3 || !is_ascii_upper(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), is_ascii_lower);
}

// Lower is better: see parse_elements.
std::tuple<bool, bool, std::string> preference(const Element& e) {
  return {e.symbol.size() > 2, !has_plain_weight(e), e.name};
}

}  // namespace

std::optional<Element> parse_element(const TextEntry& entry) {
  Element element;
  bool have_number = false;
  std::istringstream lines(entry.text);
  std::string line;
  // Only the header lines count: a description may mention "atomic number" in passing.
  while (std::getline(lines, line)) {
    const std::string trimmed = normalize_whitespace(line);
    if (trimmed.empty()) continue;
    const size_t colon = trimmed.find(':');
    if (colon == std::string::npos) break;
    const std::string key = lower_ascii(normalize_whitespace(trimmed.substr(0, colon)));
    const std::string value = normalize_whitespace(trimmed.substr(colon + 1));
    if (key == "symbol") {
      element.symbol = value;
    } else if (key == "atomic number") {
      // At most 3 digits: there are fewer than 1000 elements, and stoi cannot overflow.
      if (value.empty() || value.size() > 3 ||
          !std::all_of(value.begin(), value.end(), is_ascii_digit)) {
        return std::nullopt;
      }
      element.atomic_number = std::stoi(value);
      have_number = element.atomic_number > 0;
    } else if (key == "atomic weight" || key == "atmic weight") {
      element.atomic_weight = value;
    } else {
      break;
    }
  }
  if (!have_number || !valid_symbol(element.symbol)) return std::nullopt;
  element.name = normalize_whitespace(entry.headword);
  if (element.name.empty()) return std::nullopt;
  if (is_ascii_lower(element.name[0])) element.name[0] = static_cast<char>(element.name[0] - 32);
  return element;
}

std::vector<Element> parse_elements(const std::vector<TextEntry>& entries) {
  std::vector<Element> candidates;
  for (const auto& entry : entries) {
    if (auto element = parse_element(entry)) candidates.push_back(std::move(*element));
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const Element& a, const Element& b) {
    return preference(a) < preference(b);
  });
  std::vector<Element> kept;
  std::set<int> numbers;
  std::set<std::string> symbols;
  for (auto& e : candidates) {
    if (numbers.count(e.atomic_number) || symbols.count(e.symbol)) continue;
    numbers.insert(e.atomic_number);
    symbols.insert(e.symbol);
    kept.push_back(std::move(e));
  }
  std::sort(kept.begin(), kept.end(),
            [](const Element& a, const Element& b) { return a.atomic_number < b.atomic_number; });
  return kept;
}

std::vector<Element> read_elements(const std::string& dictd_name) {
  return parse_elements(read_dictd_named(dictd_name, DictdText::kKeepLines));
}

bool has_plain_weight(const Element& element) {
  const std::string& w = element.atomic_weight;
  const size_t dot = w.find('.');
  if (w.empty() || w.front() == '.' || w.back() == '.') return false;
  if (dot != std::string::npos && w.find('.', dot + 1) != std::string::npos) return false;
  return std::all_of(w.begin(), w.end(), [](char c) { return is_ascii_digit(c) || c == '.'; });
}

FactSet elements_fact_set(const std::vector<Element>& elements) {
  FactSet set{kElementsFacts, {symbol_relation(), number_relation(), weight_relation()}, {}};
  for (const Element& e : elements) {
    set.facts.push_back({e.name, 0, e.symbol});
    set.facts.push_back({e.name, 1, std::to_string(e.atomic_number)});
    if (has_plain_weight(e)) set.facts.push_back({e.name, 2, e.atomic_weight});
  }
  check_templates(set);
  return set;
}

}  // namespace kvtune

#include "data/elements.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <tuple>

#include "data/dictd_reader.h"
#include "data/split.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

enum class Fact { kSymbol, kNumber, kWeight };
enum class Use { kStatement, kQuestion };

struct Rendering {
  Fact fact;  // the rendering is skipped when the element lacks this fact
  Use use;
  const char* text;    // statement, or question prompt
  const char* answer;  // questions only
};

// Every wording in one place. Placeholders: {Name} "Iron", {name} "iron", {symbol}, {number},
// {weight}. Questions share no run of 4 words with the statements (a test checks this), so a
// right answer shows recall of the fact, not of the training sentence.
constexpr Rendering kRenderings[] = {
    {Fact::kSymbol, Use::kStatement, "The symbol of {Name} is {symbol}.", ""},
    {Fact::kSymbol, Use::kStatement, "{symbol} stands for {Name}.", ""},
    {Fact::kNumber, Use::kStatement, "{Name} has atomic number {number}.", ""},
    {Fact::kNumber, Use::kStatement, "Atomic number {number} belongs to {Name}.", ""},
    {Fact::kWeight, Use::kStatement, "The atomic weight of {Name} is {weight}.", ""},
    {Fact::kSymbol, Use::kQuestion,
     "Which element has the chemical symbol {symbol}? Answer:", " {Name}"},
    {Fact::kSymbol, Use::kQuestion, "What is the chemical symbol for {name}? Answer:", " {symbol}"},
    {Fact::kNumber, Use::kQuestion, "What is the atomic number of {name}? Answer:", " {number}"},
    {Fact::kNumber, Use::kQuestion,
     "Which element's atomic number is {number}? Answer:", " {Name}"},
    {Fact::kWeight, Use::kQuestion,
     "How heavy is an atom of {name}, in atomic mass units? Answer:", " {weight}"},
};

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

bool has(const Element& e, Fact fact) {
  switch (fact) {
    case Fact::kSymbol:
      return !e.symbol.empty();
    case Fact::kNumber:
      return e.atomic_number > 0;
    case Fact::kWeight:
      return has_plain_weight(e);
  }
  return false;
}

std::string render(const char* pattern, const Element& e) {
  const std::pair<const char*, std::string> values[] = {
      {"{Name}", e.name},
      {"{name}", lower_ascii(e.name)},
      {"{symbol}", e.symbol},
      {"{number}", std::to_string(e.atomic_number)},
      {"{weight}", e.atomic_weight},
  };
  std::string out = pattern;
  for (const auto& [key, value] : values) {
    const std::string k = key;
    for (size_t at = out.find(k); at != std::string::npos; at = out.find(k, at + value.size())) {
      out.replace(at, k.size(), value);
    }
  }
  return out;
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

std::vector<std::string> element_statements(const Element& element) {
  std::vector<std::string> out;
  for (const auto& r : kRenderings) {
    if (r.use == Use::kStatement && has(element, r.fact)) out.push_back(render(r.text, element));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> element_questions(const Element& element) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : kRenderings) {
    if (r.use == Use::kQuestion && has(element, r.fact)) {
      out.emplace_back(render(r.text, element), render(r.answer, element));
    }
  }
  return out;
}

bool teaches_answer_format(const Element& element) {
  return headword_unit(element.name, kAnswerFormatSalt) < 0.5;
}

std::vector<std::string> element_answered_questions(const Element& element) {
  std::vector<std::string> out;
  for (const auto& [prompt, answer] : element_questions(element)) out.push_back(prompt + answer);
  return out;
}

}  // namespace kvtune

// Elements from dict-elements, and their statements and questions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <set>

#include "data/dictd_reader.h"
#include "data/elements.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// Skips, or fails under CI=true (test_util.h), when dict-elements is not installed.
#define SKIP_UNLESS_ELEMENTS() KVTUNE_REQUIRE_DICTD("elements")

const Element* by_name(const std::vector<Element>& elements, const std::string& name) {
  for (const auto& e : elements) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// Lower-case words with punctuation removed, for comparing wordings.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.') {
      out.back().push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (!out.back().empty()) {
      out.emplace_back();
    }
  }
  if (out.back().empty()) out.pop_back();
  for (auto& w : out) {
    while (!w.empty() && w.back() == '.') w.pop_back();  // sentence full stop, not "55.847"
  }
  return out;
}

std::set<std::vector<std::string>> ngrams(const std::string& s, size_t n) {
  const auto w = words(s);
  std::set<std::vector<std::string>> out;
  for (size_t i = 0; i + n <= w.size(); ++i) out.emplace(w.begin() + i, w.begin() + i + n);
  return out;
}

TEST(DataElements, ParsesTheInstalledTable) {
  SKIP_UNLESS_ELEMENTS();
  const auto elements = read_elements();
  EXPECT_GE(elements.size(), 100u);
  const Element* iron = by_name(elements, "Iron");
  ASSERT_NE(iron, nullptr);
  EXPECT_EQ(iron->symbol, "Fe");
  EXPECT_EQ(iron->atomic_number, 26);
  EXPECT_EQ(iron->atomic_weight, "55.847");
  const Element* hydrogen = by_name(elements, "Hydrogen");
  ASSERT_NE(hydrogen, nullptr);
  EXPECT_EQ(hydrogen->symbol, "H");
  EXPECT_EQ(hydrogen->atomic_number, 1);
  EXPECT_EQ(hydrogen->atomic_weight, "1.0079");

  // One element per number and per symbol, sorted, so every question has one right answer.
  std::set<int> numbers;
  std::set<std::string> symbols;
  for (const auto& e : elements) {
    EXPECT_TRUE(numbers.insert(e.atomic_number).second) << e.atomic_number;
    EXPECT_TRUE(symbols.insert(e.symbol).second) << e.symbol;
  }
  EXPECT_TRUE(std::is_sorted(elements.begin(), elements.end(), [](const auto& a, const auto& b) {
    return a.atomic_number < b.atomic_number;
  }));
  // 110 appears twice in the source; the permanent name wins over the placeholder.
  const Element* ds = by_name(elements, "Darmstadtium");
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ(ds->atomic_number, 110);
  EXPECT_EQ(by_name(elements, "Unnildecium"), nullptr);
  // Not elements: a name variant, a particle, an entry with an empty symbol.
  EXPECT_EQ(by_name(elements, "Wolfram"), nullptr);
  EXPECT_EQ(by_name(elements, "Neutron"), nullptr);
  EXPECT_EQ(by_name(elements, "Unnilhexium"), nullptr);
}

TEST(DataElements, RendersStatementsAndQuestionsFromTheTable) {
  const Element iron{"Iron", "Fe", 26, "55.847"};
  EXPECT_THAT(
      element_statements(iron),
      ElementsAre("The symbol of Iron is Fe.", "Fe stands for Iron.", "Iron has atomic number 26.",
                  "Atomic number 26 belongs to Iron.", "The atomic weight of Iron is 55.847."));
  EXPECT_THAT(element_answered_questions(iron),
              ElementsAre("Which element has the chemical symbol Fe? Answer: Iron",
                          "What is the chemical symbol for iron? Answer: Fe",
                          "What is the atomic number of iron? Answer: 26",
                          "Which element's atomic number is 26? Answer: Iron",
                          "How heavy is an atom of iron, in atomic mass units? Answer: 55.847"));
  EXPECT_THAT(
      element_questions(iron),
      ElementsAre(Pair("Which element has the chemical symbol Fe? Answer:", " Iron"),
                  Pair("What is the chemical symbol for iron? Answer:", " Fe"),
                  Pair("What is the atomic number of iron? Answer:", " 26"),
                  Pair("Which element's atomic number is 26? Answer:", " Iron"),
                  Pair("How heavy is an atom of iron, in atomic mass units? Answer:", " 55.847")));
  // A bracketed weight is a mass number, not an atomic weight: nothing is said about it.
  const Element actinium{"Actinium", "Ac", 89, "(227)"};
  EXPECT_FALSE(has_plain_weight(actinium));
  EXPECT_EQ(element_statements(actinium).size(), 4u);
  EXPECT_EQ(element_questions(actinium).size(), 4u);
}

TEST(DataElements, QuestionsAreWordedDifferentlyFromStatements) {
  SKIP_UNLESS_ELEMENTS();
  const auto elements = read_elements();
  size_t questions = 0;
  for (const auto& e : elements) {
    const auto statements = element_statements(e);
    ASSERT_FALSE(statements.empty()) << e.name;
    for (const auto& [prompt, answer] : element_questions(e)) {
      ++questions;
      ASSERT_EQ(answer.front(), ' ') << prompt;
      const auto q = ngrams(prompt + answer, 4);
      for (const auto& s : statements) {
        for (const auto& g : ngrams(s, 4)) {
          ASSERT_EQ(q.count(g), 0u)
              << "question \"" << prompt << answer << "\" repeats 4 words of \"" << s << "\"";
        }
      }
    }
  }
  EXPECT_GE(questions, 4 * elements.size());
}

TEST(DataElements, ParsesOneEntryRobustly) {
  // The source's "Atmic weight" typo, a description line with a colon, any case.
  auto e = parse_element({"roentgenium",
                          "Symbol: Rg\nATOMIC NUMBER: 111\nAtmic weight: 280\n"
                          "Note: heavy.\nAtomic number: 5"});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->name, "Roentgenium");
  EXPECT_EQ(e->symbol, "Rg");
  EXPECT_EQ(e->atomic_number, 111);  // the description's "Atomic number: 5" is not read
  EXPECT_EQ(e->atomic_weight, "280");
  EXPECT_FALSE(parse_element({"unnilhexium", "Symbol:\nAtomic number: 106\n"}).has_value());
  EXPECT_FALSE(parse_element({"wolfram", "Original name for {tungsten}."}).has_value());
  EXPECT_FALSE(parse_element({"x", "Symbol: X\nAtomic number: 12a\n"}).has_value());
  EXPECT_FALSE(parse_element({"x", "Symbol: X\nAtomic number: 99999999999\n"}).has_value());
  EXPECT_FALSE(parse_element({"x", "Symbol: xx\nAtomic number: 3\n"}).has_value());
  EXPECT_FALSE(parse_element({"", ""}).has_value());
}

}  // namespace
}  // namespace kvtune

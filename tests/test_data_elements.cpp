// Elements from dict-elements, and the fact set rendered from them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "data/dictd_reader.h"
#include "data/elements.h"
#include "data/fact_set.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::ElementsAre;

// Skips, or fails under CI=true (test_util.h), when dict-elements is not installed.
#define SKIP_UNLESS_ELEMENTS() KVTUNE_REQUIRE_DICTD("elements")

const Element* by_name(const std::vector<Element>& elements, const std::string& name) {
  for (const auto& e : elements) {
    if (e.name == name) return &e;
  }
  return nullptr;
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
  const Element actinium{"Actinium", "Ac", 89, "(227)"};
  const FactSet set = elements_fact_set({iron, actinium});
  ASSERT_EQ(set.relations.size(), 3u);
  // A bracketed weight is a mass number, not an atomic weight: nothing is said about it.
  EXPECT_FALSE(has_plain_weight(actinium));
  ASSERT_EQ(set.facts.size(), 5u);
  EXPECT_EQ(set.facts[0].object, "Fe");
  EXPECT_EQ(set.facts[1].object, "26");
  EXPECT_EQ(set.facts[2].object, "55.847");
  EXPECT_EQ(set.facts[4].subject, "Actinium");
  EXPECT_EQ(set.facts[4].relation, 1);
  const auto documents = fact_documents(set, 1);
  std::vector<std::string> iron_texts;
  for (const auto& d : documents) {
    EXPECT_FALSE(d.show_headword);
    if (d.headword == "Iron") iron_texts.push_back(d.text);
  }
  std::vector<std::string> expected = {"The symbol of Iron is Fe.",
                                       "Fe stands for Iron.",
                                       "Iron has atomic number 26.",
                                       "Atomic number 26 belongs to Iron.",
                                       "The atomic weight of Iron is 55.847.",
                                       "The element with atomic weight 55.847 is Iron."};
  if (teaches_answer_format("Iron")) {
    // Each of a fact's questions follows its statements.
    expected = {"The symbol of Iron is Fe.",
                "Fe stands for Iron.",
                "Which element has the chemical symbol Fe? Answer: Iron",
                "What is the chemical symbol for iron? Answer: Fe",
                "Iron has atomic number 26.",
                "Atomic number 26 belongs to Iron.",
                "What is the atomic number of iron? Answer: 26",
                "Which element's atomic number is 26? Answer: Iron",
                "The atomic weight of Iron is 55.847.",
                "The element with atomic weight 55.847 is Iron.",
                "How heavy is an atom of iron, in atomic mass units? Answer: 55.847"};
  }
  EXPECT_EQ(iron_texts, expected);
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

// Fact sets (data/fact_set.h, data/fact_sets.h): templates, the training text, the evaluation
// prompts and their split, chance rates, the English-German translations, and the fact metrics
// (eval/facts.h) on hand-computed cases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <set>

#include "data/corpus.h"
#include "data/fact_set.h"
#include "data/fact_sets.h"
#include "data/split.h"
#include "data/text_data.h"
#include "data/word_translations.h"
#include "eval/facts.h"
#include "recipe_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Lower-case words with punctuation removed, for comparing wordings.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '.' || u >= 0x80) {
      out.back().push_back(static_cast<char>(std::tolower(u)));
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

// A fact set small enough to work out by hand: two relations, four subjects.
FactSet toy_set() {
  FactSet set;
  set.name = "toy";
  set.relations = {
      {"color",
       {"The color of {S} is {o}.", "{S} looks {o}.", "Painters see {s} as {o}."},
       {"The thing colored {o} is {S}.", "{o} is the color of {S}.", "Seen as {o}, it is {S}."},
       {{"What color is {s}? Answer:", false}}},
      {"size",
       {"{S} has size {o}.", "The size of {S} is {o}."},
       {"Size {o} belongs to {S}.", "Measured {o}, it is {S}."},
       {{"How big is {s}? Answer:", false}, {"Which thing has size {o}? Answer:", true}}}};
  set.facts = {{"Sky", 0, "blue"},
               {"Sky", 1, "huge"},
               {"Grass", 0, "green"},
               {"Sea", 0, "blue"},
               {"Ant", 1, "tiny"}};
  check_templates(set);
  return set;
}

TEST(FactSets, StatementPromptsCutBeforeTheAnswer) {
  const Fact iron{"Iron", 0, "Fe"};
  auto p = statement_prompt("The symbol of {S} is {o}.", iron, false);
  EXPECT_EQ(p.prompt, "The symbol of Iron is");
  EXPECT_EQ(p.answer, " Fe.");
  EXPECT_EQ(p.kind, 0);
  p = statement_prompt("{o} stands for {S}.", iron, true);
  EXPECT_EQ(p.prompt, "Fe stands for");
  EXPECT_EQ(p.answer, " Iron.");
  EXPECT_EQ(p.kind, 1);
  // A prompt that ends without a space ("...: 26.") keeps the answer without one.
  p = statement_prompt("Protons in {s}:{o}.", {"Iron", 1, "26"}, false);
  EXPECT_EQ(p.prompt, "Protons in iron:");
  EXPECT_EQ(p.answer, "26.");
  EXPECT_EQ(p.kind, 2);
  const auto q = question_prompt({"What is the chemical symbol for {s}? Answer:", false}, iron);
  EXPECT_EQ(q.prompt, "What is the chemical symbol for iron? Answer:");
  EXPECT_EQ(q.answer, " Fe");
  EXPECT_EQ(render_statement("{o} stands for {S}.", iron), "Fe stands for Iron.");
}

TEST(FactSets, TemplatesMustEndInTheirAnswer) {
  FactSet set = toy_set();
  set.relations[0].forward[1] = "{o} is how {S} looks.";  // the answer comes first
  EXPECT_THAT(test::error_of([&] { check_templates(set); }),
              HasSubstr("must name the subject and end"));
  set = toy_set();
  set.relations[1].reverse[0] = "{S} has size {o}.";  // a forward template among the reverse
  EXPECT_THAT(test::error_of([&] { check_templates(set); }), HasSubstr("reverse template"));
  set = toy_set();
  set.relations[1].reverse[1] = "{s}, measured {o}, is {S}.";  // names the answer early
  EXPECT_THAT(test::error_of([&] { check_templates(set); }), HasSubstr("names the answer"));
  set = toy_set();
  set.relations[1].forward.resize(1);
  EXPECT_THAT(test::error_of([&] { check_templates(set); }), HasSubstr("at least 2"));
}

TEST(FactSets, TrainTemplatesKeepAHeldOutWordingInEachDirection) {
  const FactSet set = toy_set();
  EXPECT_EQ(max_train_templates(set), 1);  // "size" has 2 per direction: 1 trained, 1 held out
  EXPECT_NO_THROW(check_train_templates(set, 1, "ctx"));
  for (int64_t bad : {0, 2, -1}) {
    EXPECT_THAT(test::error_of([&] { check_train_templates(set, bad, "recipe.yaml: key x"); }),
                AllOf(HasSubstr("recipe.yaml: key x"), HasSubstr("use 1 to 1")))
        << bad;
  }
}

TEST(FactSets, DocumentsHoldTrainedTemplatesOnlyAndFormatQuestions) {
  const FactSet set = toy_set();
  const auto docs = fact_documents(set, 1);
  std::multiset<std::string> texts;
  for (const auto& d : docs) texts.insert(d.text);
  // Sky: color and size, first template of each direction.
  EXPECT_EQ(texts.count("The color of Sky is blue."), 1u);
  EXPECT_EQ(texts.count("The thing colored blue is Sky."), 1u);
  EXPECT_EQ(texts.count("Sky has size huge."), 1u);
  EXPECT_EQ(texts.count("Size huge belongs to Sky."), 1u);
  EXPECT_EQ(texts.count("Sky looks blue."), 0u);  // held out
  // The questions, answered, only for subjects that teach the answer format.
  for (const std::string subject : {"Sky", "Grass", "Sea", "Ant"}) {
    int64_t questions = 0, statements = 0;
    for (const auto& d : docs) {
      if (d.headword != subject) continue;
      (d.text.find("Answer:") != std::string::npos ? questions : statements)++;
    }
    int64_t facts = 0, asked = 0;
    for (const auto& f : set.facts) {
      if (f.subject != subject) continue;
      ++facts;
      asked += static_cast<int64_t>(set.relations[f.relation].questions.size());
    }
    EXPECT_EQ(statements, 2 * facts) << subject;
    EXPECT_EQ(questions, teaches_answer_format(subject) ? asked : 0) << subject;
  }
}

TEST(FactSets, ChanceIsOneOverTheDistinctAnswersOfAKind) {
  const FactSet set = toy_set();
  const auto p = fact_prompts(set, 0.5, 0, 1);
  // Kinds: color forward 0 (answers blue, green: 1/2), color reverse 1 (Sky, Grass, Sea: 1/3),
  // size forward 2 (huge, tiny), size reverse 3 (Sky, Ant), then questions: color's 4 (blue,
  // green), size's 5 (huge, tiny) and 6 (Sky, Ant).
  ASSERT_EQ(p.chance_by_kind.size(), 7u);
  const std::vector<double> expected = {1.0 / 2, 1.0 / 3, 1.0 / 2, 1.0 / 2,
                                        1.0 / 2, 1.0 / 2, 1.0 / 2};
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_NEAR(p.chance_by_kind[k], expected[k], 1e-15) << k;
  }
}

TEST(FactSets, PromptGroupsFollowTheSplitAndTheFormatHalf) {
  const FactSet set = toy_set();
  const double fraction = 0.5;
  const auto p = fact_prompts(set, fraction, 7, 1);
  std::map<std::string, int> facts_of;
  for (const auto& f : set.facts) ++facts_of[f.subject];
  size_t want_trained = 0, want_control = 0;
  for (const auto& [subject, n] : facts_of) {
    if (is_held_out(subject, fraction, 7)) {
      want_control += n;
    } else if (!teaches_answer_format(subject)) {
      want_trained += n;
    }
  }
  // Per fact: one trained and one held-out wording per direction in this set (2 and 2, or 3
  // and 3 minus the trained one).
  size_t trained_heldout = 0;
  for (const auto& f : set.facts) {
    if (is_held_out(f.subject, fraction, 7) || teaches_answer_format(f.subject)) continue;
    const auto& r = set.relations[f.relation];
    trained_heldout += r.forward.size() - 1 + r.reverse.size() - 1;
  }
  EXPECT_EQ(p.trained.trained_wordings.size(), 2 * want_trained);
  EXPECT_EQ(p.trained.heldout_wordings.size(), trained_heldout);
  EXPECT_EQ(p.control.trained_wordings.size(), 2 * want_control);
  for (const auto& q : p.control.heldout_wordings) EXPECT_TRUE(is_held_out(q.subject, fraction, 7));
  for (const auto& q : p.trained.questions) {
    EXPECT_FALSE(is_held_out(q.subject, fraction, 7));
    EXPECT_FALSE(teaches_answer_format(q.subject)) << q.subject;
  }
}

// Every installed fact set: templates valid, questions share no run of 4 words with any
// statement, and nothing that evaluation asks is in the training text.
class InstalledFactSet : public ::testing::TestWithParam<std::string> {};

TEST_P(InstalledFactSet, QuestionsShareNoFourWordRunWithAnyStatement) {
  KVTUNE_REQUIRE_DICTD(fact_set_dictionary(GetParam()));
  const auto set = load_fact_set(GetParam());
  size_t questions = 0;
  for (const auto& f : set->facts) {
    const Relation& r = set->relations[f.relation];
    std::set<std::vector<std::string>> statement_runs;
    for (const auto* templates : {&r.forward, &r.reverse}) {
      for (const auto& t : *templates) {
        for (auto& g : ngrams(render_statement(t, f), 4)) statement_runs.insert(g);
      }
    }
    for (const auto& qt : r.questions) {
      const FactPrompt p = question_prompt(qt, f);
      ++questions;
      ASSERT_EQ(p.answer.front(), ' ') << p.prompt;
      for (const auto& g : ngrams(p.prompt + p.answer, 4)) {
        ASSERT_EQ(statement_runs.count(g), 0u)
            << "question \"" << p.prompt << p.answer << "\" repeats 4 words of a statement";
      }
    }
  }
  EXPECT_GE(questions, set->facts.size());
}

TEST_P(InstalledFactSet, NoEvaluationWordingOrControlFactInTheTrainingText) {
  KVTUNE_REQUIRE_DICTD(fact_set_dictionary(GetParam()));
  DataConfig data;
  data.held_out_fraction = 0.1;
  data.train_templates = 2;
  const Split split = split_corpora({GetParam()}, data);
  std::set<std::string> train_text;
  for (const auto& e : split.train) {
    train_text.insert(document_text(e));
  }
  ASSERT_FALSE(train_text.empty());
  const auto prompts = fact_prompts_for(GetParam(), data);
  const auto set = load_fact_set(GetParam());
  // No held-out wording of any fact, trained or control, is a training document; no question
  // of a trained fact or of a control fact is either.
  for (const FactPromptGroup* g : {&prompts.trained, &prompts.control}) {
    for (const auto& p : g->heldout_wordings) {
      ASSERT_EQ(train_text.count(p.prompt + p.answer), 0u) << p.prompt << p.answer;
    }
    for (const auto& p : g->questions) {
      ASSERT_EQ(train_text.count(p.prompt + p.answer), 0u) << p.prompt << p.answer;
    }
  }
  // The trained group's statements in the trained wordings are all there.
  for (const auto& p : prompts.trained.trained_wordings) {
    ASSERT_EQ(train_text.count(p.prompt + p.answer), 1u) << p.prompt << p.answer;
  }
  // A control subject appears in no training document at all, as a word of its own.
  std::set<std::string> control_subjects;
  for (const auto& p : prompts.control.questions) control_subjects.insert(p.subject);
  ASSERT_FALSE(control_subjects.empty());
  std::set<std::string> train_words;
  for (const auto& t : train_text) {
    for (auto& w : words(t)) train_words.insert(w);
  }
  for (const auto& s : control_subjects) {
    const auto w = words(s);
    if (w.size() == 1) EXPECT_EQ(train_words.count(w[0]), 0u) << "control subject " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(BuiltIn, InstalledFactSet,
                         ::testing::Values(std::string(kElementsFacts), std::string(kEngDeuFacts)),
                         [](const auto& info) {
                           return info.param == kElementsFacts ? "Elements" : "EngDeu";
                         });

TEST(FactSets, TemplatesAloneMatchTheLoadedSets) {
  for (const auto& name : fact_set_names()) {
    const FactSet bare = fact_set_templates(name);
    EXPECT_TRUE(bare.facts.empty());
    EXPECT_EQ(bare.name, name);
    KVTUNE_REQUIRE_DICTD(fact_set_dictionary(name));
    const auto full = load_fact_set(name);
    ASSERT_EQ(bare.relations.size(), full->relations.size());
    for (size_t r = 0; r < bare.relations.size(); ++r) {
      EXPECT_EQ(bare.relations[r].forward, full->relations[r].forward);
      EXPECT_EQ(bare.relations[r].reverse, full->relations[r].reverse);
    }
    EXPECT_EQ(max_train_templates(bare), 4);
  }
}

TEST(FactSets, UnknownNamesAreRefusedWithTheKnownOnes) {
  EXPECT_FALSE(is_fact_set("foldoc"));
  EXPECT_THAT(
      test::error_of([] { load_fact_set("wikidata-facts"); }),
      AllOf(HasSubstr("wikidata-facts"), HasSubstr("elements-facts"), HasSubstr("eng-deu-facts")));
}

TextEntry freedict_entry(const std::string& headword, const std::string& text) {
  return {headword, text, true};
}

TEST(WordTranslations, ParsesOnlyUnambiguousNounEntries) {
  const auto house = parse_translation(freedict_entry("house", "house /hˈaʊs/\nHaus <neut>\n"));
  ASSERT_TRUE(house.has_value());
  EXPECT_EQ(house->german, "Haus");
  EXPECT_EQ(house->gender, "neut");
  // Umlauts and ß, a leading capital umlaut; examples after the translation line are ignored.
  const auto anger = parse_translation(
      freedict_entry("anger", "anger /ˈæŋɡə/\nÄrger <masc>\n      \"in anger\"  - im Zorn\n"));
  ASSERT_TRUE(anger.has_value());
  EXPECT_EQ(anger->german, "Ärger");
  const auto street = parse_translation(freedict_entry("street", "street\nStraße <fem>\n"));
  ASSERT_TRUE(street.has_value());
  EXPECT_EQ(street->german, "Straße");
  // Refused: a verb, two translations, a subject label, no gender, a lower-case German word, a
  // headword that is not a plain lower-case word, too short, empty text.
  for (const auto& [headword, text] : std::vector<std::pair<std::string, std::string>>{
           {"water", "water /wˈɔːtə/ <v>\ngießen <v, trans>\n"},
           {"dog", "dog /dˈɒɡ/\nHund <masc>, Köter <masc>\n"},
           {"bock", "bock /b/\nBock <masc> [techn.]\n"},
           {"red", "red /ɹˈɛd/\nrot <adj>\n"},
           {"house", "house /hˈaʊs/\nhaus <neut>\n"},
           {"House", "House /hˈaʊs/\nHaus <neut>\n"},
           {"ice cream", "ice cream\nEis <neut>\n"},
           {"ox", "ox\nOchse <masc>\n"},
           {"house", ""},
           {"house", "house /hˈaʊs/\n"},
           {"house", "house /hˈaʊs/\nHaus\xff <neut>\n"},
       }) {
    EXPECT_FALSE(parse_translation(freedict_entry(headword, text)).has_value())
        << headword << ": " << text;
  }
  // A word with several entries (senses) is left out altogether.
  const auto parsed = parse_translations({freedict_entry("house", "house\nHaus <neut>\n"),
                                          freedict_entry("house", "house\nGeschlecht <neut>\n"),
                                          freedict_entry("tree", "tree\nBaum <masc>\n")});
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].english, "tree");
}

TEST(WordTranslations, TheInstalledSetHasOverAThousandFactsInEveryRun) {
  KVTUNE_REQUIRE_DICTD("freedict-eng-deu");
  const auto a = read_translations();
  ASSERT_EQ(a.size(), static_cast<size_t>(kTranslationFacts));
  const auto b = read_translations();
  std::set<std::string> english;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].english, b[i].english);
    EXPECT_EQ(a[i].german, b[i].german);
    english.insert(a[i].english);
  }
  EXPECT_EQ(english.size(), a.size());  // one fact per English word
  const auto set = load_fact_set(kEngDeuFacts);
  EXPECT_EQ(set->facts.size(), a.size());
  const auto p = fact_prompts_for(kEngDeuFacts, DataConfig{});
  // About 10% held out, about half of the rest in the trained group.
  EXPECT_GT(p.control.questions.size(), 2 * 60u);
  EXPECT_LT(p.control.questions.size(), 2 * 180u);
  EXPECT_GT(p.trained.questions.size(), 2 * 400u);
}

// Hand-computed metrics: two trained held-out wordings (one right), three questions (two
// right), one control wording (wrong); chance as given per kind.
TEST(FactMetrics, JsonReportsTheHandComputedFractions) {
  const std::vector<FactPrompt> heldout = {{"A", "p1", " x.", 0}, {"B", "p2", " y.", 1}};
  const std::vector<FactPrompt> questions = {
      {"A", "q1", " x", 2}, {"B", "q2", " y", 2}, {"C", "q3", " z", 2}};
  const std::vector<FactPrompt> control = {{"D", "c1", " w.", 0}};
  FactScores s;
  const auto fill = [](ExactMatch& m, const std::vector<FactPrompt>& prompts,
                       const std::vector<bool>& right, const std::vector<double>& chance) {
    double sum = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      m.answers.push_back({&prompts[i], right[i] ? prompts[i].answer : " nope", right[i]});
      m.correct += right[i];
      sum += chance[prompts[i].kind];
    }
    m.total = static_cast<int64_t>(prompts.size());
    m.accuracy = double(m.correct) / double(m.total);
    m.chance = sum / double(m.total);
  };
  const std::vector<double> chance = {0.5, 0.25, 0.1};
  fill(s.trained.heldout_wordings, heldout, {true, false}, chance);
  fill(s.trained.questions, questions, {true, true, false}, chance);
  fill(s.control.heldout_wordings, control, {false}, chance);
  const auto j = fact_metrics_json(s, 8);
  EXPECT_DOUBLE_EQ(j["wording_recall"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["exact_match"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(j["wording_recall_control"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["wording_chance"].get<double>(), 0.5);
  EXPECT_EQ(j["wording_prompts"].get<int64_t>(), 2);
  EXPECT_EQ(j["questions"].get<int64_t>(), 3);
  EXPECT_EQ(j["control_wording_prompts"].get<int64_t>(), 1);
  EXPECT_EQ(j["control_questions"].get<int64_t>(), 0);
  ASSERT_EQ(j["answers"].size(), 5u);
  EXPECT_EQ(j["answers"][1]["predicted"].get<std::string>(), " nope");
  EXPECT_FALSE(j["answers"][1]["correct"].get<bool>());
}

TEST(FactMetrics, SpreadSubsetKeepsEvenlySpacedPrompts) {
  std::vector<FactPrompt> prompts;
  for (int i = 0; i < 10; ++i) prompts.push_back({"s", std::to_string(i), " a", i % 2});
  const auto four = spread_subset(prompts, 4);
  ASSERT_EQ(four.size(), 4u);
  // floor(i * 10 / 4): 0, 2, 5, 7.
  EXPECT_EQ(four[0].prompt, "0");
  EXPECT_EQ(four[1].prompt, "2");
  EXPECT_EQ(four[2].prompt, "5");
  EXPECT_EQ(four[3].prompt, "7");
  EXPECT_EQ(spread_subset(prompts, 0).size(), 10u);
  EXPECT_EQ(spread_subset(prompts, 20).size(), 10u);
  FactPrompts all;
  all.trained.questions = prompts;
  all.control.heldout_wordings = prompts;
  const auto cut = limit_prompts(all, 3);
  EXPECT_EQ(cut.trained.questions.size(), 3u);
  EXPECT_EQ(cut.control.heldout_wordings.size(), 3u);
  EXPECT_TRUE(cut.trained.heldout_wordings.empty());
}

}  // namespace
}  // namespace kvtune

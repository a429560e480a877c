#include "data/fact_set.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/check.h"
#include "data/split.h"

namespace kvtune {
namespace {

// Salt of the hash that picks the subjects whose answered questions are trained (the value the
// elements used before fact sets were generalized, so that their halves stay the same).
constexpr uint64_t kAnswerFormatSalt = 0x5eedfac75ull;

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string fill(const std::string& pattern, const Fact& fact) {
  const std::pair<const char*, std::string> values[] = {
      {"{S}", fact.subject}, {"{s}", lower_ascii(fact.subject)}, {"{o}", fact.object}};
  std::string out = pattern;
  for (const auto& [key, value] : values) {
    const std::string k = key;
    for (size_t at = out.find(k); at != std::string::npos; at = out.find(k, at + value.size())) {
      out.replace(at, k.size(), value);
    }
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Kinds: (relation r, forward) 2r, (r, reverse) 2r + 1; question q of all relations, in order,
// 2 * relations + q.
int statement_kind(int relation, bool reverse) {
  return 2 * relation + (reverse ? 1 : 0);
}

}  // namespace

int64_t max_train_templates(const FactSet& set) {
  KVT_CHECK(!set.relations.empty(), "fact set '", set.name, "' has no relations");
  size_t fewest = SIZE_MAX;
  for (const auto& r : set.relations)
    fewest = std::min({fewest, r.forward.size(), r.reverse.size()});
  return static_cast<int64_t>(fewest) - 1;
}

void check_train_templates(const FactSet& set, int64_t train_templates,
                           const std::string& context) {
  const int64_t most = max_train_templates(set);
  KVT_CHECK(train_templates >= 1 && train_templates <= most, context, ": ", train_templates,
            " training templates for fact set '", set.name, "', which has ", most + 1,
            " statement templates per relation and direction: use 1 to ", most,
            " (the others are held out for evaluation in wordings never trained)");
}

void check_templates(const FactSet& set) {
  for (const auto& r : set.relations) {
    KVT_CHECK(r.forward.size() >= 2 && r.reverse.size() >= 2, "fact set '", set.name,
              "', relation '", r.name, "': needs at least 2 statement templates per direction");
    for (const auto& t : r.forward) {
      KVT_CHECK(ends_with(t, "{o}.") &&
                    (t.find("{S}") != std::string::npos || t.find("{s}") != std::string::npos),
                "fact set '", set.name, "', relation '", r.name, "': forward template '", t,
                "' must name the subject and end in \"{o}.\"");
      KVT_CHECK(t.find("{o}") == t.size() - 4, "fact set '", set.name, "': template '", t,
                "' names the answer before its end");
    }
    for (const auto& t : r.reverse) {
      KVT_CHECK(ends_with(t, "{S}.") && t.find("{o}") != std::string::npos, "fact set '", set.name,
                "', relation '", r.name, "': reverse template '", t,
                "' must name the object and end in \"{S}.\"");
      KVT_CHECK(t.find("{S}") == t.size() - 4 && t.find("{s}") == std::string::npos, "fact set '",
                set.name, "': template '", t, "' names the answer before its end");
    }
  }
}

std::string render_statement(const std::string& pattern, const Fact& fact) {
  return fill(pattern, fact);
}

FactPrompt statement_prompt(const std::string& pattern, const Fact& fact, bool reverse) {
  // The answer slot is the last 4 characters but the final "." (check_templates): the prompt is
  // what comes before it, less the space that the answer then opens with.
  std::string head = pattern.substr(0, pattern.size() - 4);
  std::string answer = reverse ? fact.subject : fact.object;
  std::string prompt = fill(head, fact);
  if (!prompt.empty() && prompt.back() == ' ') {
    prompt.pop_back();
    answer = " " + answer;
  }
  return {fact.subject, prompt, answer + ".", statement_kind(fact.relation, reverse)};
}

FactPrompt question_prompt(const QuestionTemplate& question, const Fact& fact) {
  return {fact.subject, fill(question.prompt, fact),
          " " + (question.asks_subject ? fact.subject : fact.object), 0};
}

bool teaches_answer_format(const std::string& subject) {
  return headword_unit(subject, kAnswerFormatSalt) < 0.5;
}

std::vector<TextEntry> fact_documents(const FactSet& set, int64_t train_templates) {
  check_train_templates(set, train_templates, "fact set documents");
  std::vector<TextEntry> out;
  const auto t = static_cast<size_t>(train_templates);
  for (const Fact& f : set.facts) {
    const Relation& r = set.relations.at(f.relation);
    for (size_t i = 0; i < t; ++i) out.push_back({f.subject, fill(r.forward[i], f), false});
    for (size_t i = 0; i < t; ++i) out.push_back({f.subject, fill(r.reverse[i], f), false});
    if (!teaches_answer_format(f.subject)) continue;
    for (const auto& q : r.questions) {
      const FactPrompt p = question_prompt(q, f);
      out.push_back({f.subject, p.prompt + p.answer, false});
    }
  }
  return out;
}

FactPrompts fact_prompts(const FactSet& set, double held_out_fraction, uint64_t split_salt,
                         int64_t train_templates) {
  check_train_templates(set, train_templates, "fact prompts");
  FactPrompts out;
  // Question kinds follow the statement kinds: the first question of relation r is kind
  // 2 * relations + (questions of the relations before r).
  std::vector<int> first_question(set.relations.size(), 0);
  int questions = 0;
  for (size_t r = 0; r < set.relations.size(); ++r) {
    first_question[r] = 2 * static_cast<int>(set.relations.size()) + questions;
    questions += static_cast<int>(set.relations[r].questions.size());
  }
  std::map<int, std::set<std::string>> answers_by_kind;
  const auto t = static_cast<size_t>(train_templates);
  for (const Fact& f : set.facts) {
    const Relation& r = set.relations.at(f.relation);
    const bool held_out = is_held_out(f.subject, held_out_fraction, split_salt);
    FactPromptGroup* group = held_out                            ? &out.control
                             : !teaches_answer_format(f.subject) ? &out.trained
                                                                 : nullptr;
    for (int dir = 0; dir < 2; ++dir) {
      const auto& templates = dir == 0 ? r.forward : r.reverse;
      for (size_t i = 0; i < templates.size(); ++i) {
        FactPrompt p = statement_prompt(templates[i], f, dir == 1);
        answers_by_kind[p.kind].insert(p.answer);
        if (group) (i < t ? group->trained_wordings : group->heldout_wordings).push_back(p);
      }
    }
    for (size_t q = 0; q < r.questions.size(); ++q) {
      FactPrompt p = question_prompt(r.questions[q], f);
      p.kind = first_question[f.relation] + static_cast<int>(q);
      answers_by_kind[p.kind].insert(p.answer);
      if (group) group->questions.push_back(p);
    }
  }
  out.chance_by_kind.assign(2 * set.relations.size() + questions, 0.0);
  for (const auto& [kind, answers] : answers_by_kind) {
    out.chance_by_kind[kind] = 1.0 / double(answers.size());
  }
  return out;
}

}  // namespace kvtune

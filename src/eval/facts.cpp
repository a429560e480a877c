#include "eval/facts.h"

#include <algorithm>
#include <map>
#include <set>

#include "data/elements.h"
#include "data/split.h"
#include "model/generate.h"

namespace kvtune {

FactQuestionSets element_fact_questions(const DataConfig& data) {
  FactQuestionSets sets;
  std::map<int, std::set<std::string>> answers_by_kind;
  for (const Element& e : read_elements()) {
    const auto questions = element_questions(e);
    const bool held_out = is_held_out(e.name, data.held_out_fraction, data.split_salt);
    for (size_t i = 0; i < questions.size(); ++i) {
      // Wordings are listed in a fixed order; an element without a plain weight lacks the last.
      FactQuestion q{e.name, questions[i].first, questions[i].second, static_cast<int>(i)};
      answers_by_kind[q.kind].insert(q.answer);
      if (held_out) {
        sets.control.push_back(q);
      } else if (!teaches_answer_format(e)) {
        sets.trained.push_back(q);
      }
    }
  }
  sets.chance_by_kind.assign(answers_by_kind.size(), 0.0);
  for (const auto& [kind, answers] : answers_by_kind) {
    sets.chance_by_kind[kind] = 1.0 / double(answers.size());
  }
  return sets;
}

std::vector<std::string> element_group_statements(const DataConfig& data, bool control) {
  std::vector<std::string> out;
  for (const Element& e : read_elements()) {
    const bool held_out = is_held_out(e.name, data.held_out_fraction, data.split_salt);
    if (held_out != control || (!control && teaches_answer_format(e))) continue;
    for (auto& s : element_statements(e)) out.push_back(std::move(s));
  }
  return out;
}

std::vector<FactQuestion> statement_completions(const std::vector<std::string>& statements) {
  std::vector<FactQuestion> out;
  for (const auto& s : statements) {
    const auto space = s.find_last_of(' ');
    if (space == std::string::npos || space == 0) continue;
    const std::string answer = s.substr(space);
    if (answer.size() <= 1) continue;
    out.push_back(FactQuestion{s, s.substr(0, space), answer, -1});
  }
  return out;
}

bool answer_matches(const std::string& predicted, const std::string& expected) {
  return predicted == expected;
}

ExactMatch exact_match(TransformerLM& model, const Tokenizer& tokenizer,
                       const std::vector<FactQuestion>& questions,
                       const std::vector<double>& chance_by_kind) {
  ExactMatch m;
  if (questions.empty()) return m;
  std::vector<std::vector<int64_t>> prompts;
  int64_t longest = 0;
  for (const auto& q : questions) {
    prompts.push_back(tokenizer.encode(q.prompt, /*add_bos=*/true, /*add_eos=*/false));
    longest = std::max<int64_t>(longest, tokenizer.encode(q.answer, false, false).size());
  }
  GenerateOptions options;
  options.max_new_tokens = longest + 2;  // room to show a wrong, longer answer
  options.eos_id = tokenizer.eos_id();
  options.pad_id = tokenizer.pad_id();
  const auto continuations = greedy_continue(model, prompts, options);
  double chance_sum = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    std::string predicted = tokenizer.decode(continuations[i]);
    const bool correct = answer_matches(predicted, q.answer);
    m.correct += correct ? 1 : 0;
    if (q.kind >= 0 && static_cast<size_t>(q.kind) < chance_by_kind.size()) {
      chance_sum += chance_by_kind[q.kind];
    }
    m.answers.push_back({&q, std::move(predicted), correct});
  }
  m.total = static_cast<int64_t>(questions.size());
  m.accuracy = double(m.correct) / double(m.total);
  m.chance = chance_sum / double(m.total);
  return m;
}

nlohmann::json fact_metrics_json(const ExactMatch& trained, const ExactMatch& control,
                                 int64_t samples) {
  nlohmann::json answers = nlohmann::json::array();
  for (const auto& a : trained.answers) {
    if (static_cast<int64_t>(answers.size()) >= samples) break;
    answers.push_back({{"prompt", a.question->prompt},
                       {"expected", a.question->answer},
                       {"predicted", a.predicted},
                       {"correct", a.correct}});
  }
  return {{"exact_match", trained.accuracy},    {"exact_match_control", control.accuracy},
          {"chance", control.chance},           {"questions", trained.total},
          {"control_questions", control.total}, {"answers", answers}};
}

nlohmann::json evaluate_facts(TransformerLM& model, const Tokenizer& tokenizer,
                              const FactQuestionSets& sets) {
  const auto trained = exact_match(model, tokenizer, sets.trained, sets.chance_by_kind);
  const auto control = exact_match(model, tokenizer, sets.control, sets.chance_by_kind);
  return fact_metrics_json(trained, control);
}

}  // namespace kvtune

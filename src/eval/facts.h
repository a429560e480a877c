// Exact-match evaluation of fact recall: greedy answers to questions worded differently from the
// statements a model was trained on (docs/eval.md).
//
// The "elements-facts" corpus trains on every statement of the training-side elements and on the
// answered questions of half of them (data/elements.h: teaches_answer_format). That half teaches
// the answer format; the questions of the other half are the trained facts asked in new words;
// the questions of held-out elements, whose statements were never trained, are the control.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data_config.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace kvtune {

struct FactQuestion {
  std::string subject;  // "Iron"
  std::string prompt;   // "What is the atomic number of iron? Answer:"
  std::string answer;   // " 26" (leading space, as the answer follows "Answer:")
  int kind = 0;         // which wording (index in element_questions' order)
};

struct FactQuestionSets {
  std::vector<FactQuestion> trained;  // train-side elements whose questions were never shown
  std::vector<FactQuestion> control;  // held-out elements: nothing about them was trained
  // 1 / (distinct answers of the kind, over all elements), per kind: the exact match of a guess
  // drawn uniformly from the answers of that kind.
  std::vector<double> chance_by_kind;
};

// The question sets of the "elements-facts" corpus under `data`'s split.
FactQuestionSets element_fact_questions(const DataConfig& data);

// The statements (data/elements.h: element_statements) of one group's elements, in atomic
// number order: the control group's are the natural text for `kvtune remember` to learn what the
// model was never trained on. `control` false: the trained-fact group (not the format half).
std::vector<std::string> element_group_statements(const DataConfig& data, bool control);

// Verbatim recall: each statement cut before its last word, the answer being that word with the
// statement's end ("The symbol of Iron is" -> " Fe."; "Atomic number 26 belongs to" -> " Iron."):
// a greedy continuation matches when it ends the text there, as the statement did.
// kind is -1 (no chance level); subject is the statement itself.
std::vector<FactQuestion> statement_completions(const std::vector<std::string>& statements);

struct AnsweredQuestion {
  const FactQuestion* question;
  std::string predicted;
  bool correct;
};

struct ExactMatch {
  int64_t correct = 0;
  int64_t total = 0;
  double accuracy = 0;  // correct / total (0 for an empty set)
  double chance = 0;    // mean chance over the questions asked
  std::vector<AnsweredQuestion> answers;
};

// Greedy answers (at most the longest answer's tokens + 2), scored by exact string equality of
// the continuation up to end of text with the expected answer.
ExactMatch exact_match(TransformerLM& model, const Tokenizer& tokenizer,
                       const std::vector<FactQuestion>& questions,
                       const std::vector<double>& chance_by_kind);

// True when `predicted` equals `expected` exactly (both as decoded text).
bool answer_matches(const std::string& predicted, const std::string& expected);

// {"exact_match", "exact_match_control", "chance", "questions", "control_questions",
//  "answers": first `samples` trained questions with prompt, expected, predicted, correct}.
nlohmann::json fact_metrics_json(const ExactMatch& trained, const ExactMatch& control,
                                 int64_t samples = 8);

// Both sets evaluated on `model`: the JSON above.
nlohmann::json evaluate_facts(TransformerLM& model, const Tokenizer& tokenizer,
                              const FactQuestionSets& questions);

}  // namespace kvtune

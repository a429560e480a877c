// Exact-match evaluation of fact recall (docs/eval.md): greedy continuations of the prompts of a
// fact set (data/fact_set.h) against their answers, for
//  (a) statements in held-out wordings, templates never trained ("wording_recall");
//  (b) questions ("exact_match");
//  (c) the same two for the held-out subjects, nothing of which was trained (the controls,
//      "..._control"), beside their chance rates;
// and statements in the trained wordings, verbatim ("verbatim_recall"). General forgetting (d)
// is the general sets' metrics, measured beside these (eval/evaluate.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data_config.h"
#include "data/fact_set.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace kvtune {

// The prompts of the fact set `name` under `data`'s split and train_templates.
FactPrompts fact_prompts_for(const std::string& name, const DataConfig& data);

struct AnsweredPrompt {
  const FactPrompt* prompt;
  std::string predicted;
  bool correct;
};

struct ExactMatch {
  int64_t correct = 0;
  int64_t total = 0;
  double accuracy = 0;  // correct / total (0 for an empty set)
  double chance = 0;    // mean chance over the prompts asked (chance_by_kind of each one's kind)
  std::vector<AnsweredPrompt> answers;
};

// Greedy answers (at most the longest answer's tokens + 2), scored by exact string equality of
// the continuation up to end of text with the expected answer. A kind outside chance_by_kind
// counts as chance 0.
ExactMatch exact_match(TransformerLM& model, const Tokenizer& tokenizer,
                       const std::vector<FactPrompt>& prompts,
                       const std::vector<double>& chance_by_kind);

// True when `predicted` equals `expected` exactly (both as decoded text).
bool answer_matches(const std::string& predicted, const std::string& expected);

// At most `limit` of the prompts (0: all), evenly spaced (every k-th, from the first): a fixed
// subset, the same on every run, that keeps each kind's share.
std::vector<FactPrompt> spread_subset(const std::vector<FactPrompt>& prompts, int64_t limit);

// The four measures of one group of prompts.
struct FactGroupScores {
  ExactMatch heldout_wordings, questions, trained_wordings;
};

struct FactScores {
  FactGroupScores trained, control;
};

// Each list of `prompts` cut to at most `limit` prompts by spread_subset (0: all kept).
FactPrompts limit_prompts(FactPrompts prompts, int64_t limit);

// Every group of `prompts` evaluated on `model`. The answers point into `prompts`.
FactScores score_facts(TransformerLM& model, const Tokenizer& tokenizer,
                       const FactPrompts& prompts);

// {"wording_recall", "wording_recall_control", "wording_chance",
//  "exact_match", "exact_match_control", "chance",
//  "verbatim_recall", "verbatim_recall_control",
//  "wording_prompts", "questions", "control_wording_prompts", "control_questions",
//  "answers": the first `samples` answers of the trained group's (a) and (b)}.
nlohmann::json fact_metrics_json(const FactScores& scores, int64_t samples = 8);

// score_facts then fact_metrics_json.
nlohmann::json evaluate_facts(TransformerLM& model, const Tokenizer& tokenizer,
                              const FactPrompts& prompts);

}  // namespace kvtune

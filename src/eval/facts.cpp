#include "eval/facts.h"

#include <algorithm>

#include "data/fact_sets.h"
#include "model/generate.h"

namespace kvtune {

FactPrompts fact_prompts_for(const std::string& name, const DataConfig& data) {
  return fact_prompts(*load_fact_set(name), data.held_out_fraction, data.split_salt,
                      data.train_templates);
}

bool answer_matches(const std::string& predicted, const std::string& expected) {
  return predicted == expected;
}

ExactMatch exact_match(TransformerLM& model, const Tokenizer& tokenizer,
                       const std::vector<FactPrompt>& prompts,
                       const std::vector<double>& chance_by_kind) {
  ExactMatch m;
  if (prompts.empty()) return m;
  std::vector<std::vector<int64_t>> encoded;
  encoded.reserve(prompts.size());
  int64_t longest = 0;
  for (const auto& p : prompts) {
    encoded.push_back(tokenizer.encode(p.prompt, /*add_bos=*/true, /*add_eos=*/false));
    longest = std::max<int64_t>(longest, tokenizer.encode(p.answer, false, false).size());
  }
  GenerateOptions options;
  options.max_new_tokens = longest + 2;  // room to show a wrong, longer answer
  options.eos_id = tokenizer.eos_id();
  options.pad_id = tokenizer.pad_id();
  const auto continuations = greedy_continue(model, encoded, options);
  double chance_sum = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    std::string predicted = tokenizer.decode(continuations[i]);
    const bool correct = answer_matches(predicted, p.answer);
    m.correct += correct ? 1 : 0;
    if (p.kind >= 0 && static_cast<size_t>(p.kind) < chance_by_kind.size()) {
      chance_sum += chance_by_kind[p.kind];
    }
    m.answers.push_back({&p, std::move(predicted), correct});
  }
  m.total = static_cast<int64_t>(prompts.size());
  m.accuracy = double(m.correct) / double(m.total);
  m.chance = chance_sum / double(m.total);
  return m;
}

std::vector<FactPrompt> spread_subset(const std::vector<FactPrompt>& prompts, int64_t limit) {
  const auto n = static_cast<int64_t>(prompts.size());
  if (limit <= 0 || n <= limit) return prompts;
  std::vector<FactPrompt> out;
  out.reserve(static_cast<size_t>(limit));
  // Index floor(i * n / limit) for i < limit: distinct, increasing, evenly spread.
  for (int64_t i = 0; i < limit; ++i) out.push_back(prompts[static_cast<size_t>(i * n / limit)]);
  return out;
}

FactPrompts limit_prompts(FactPrompts prompts, int64_t limit) {
  for (FactPromptGroup* g : {&prompts.trained, &prompts.control}) {
    for (auto* v : {&g->heldout_wordings, &g->questions, &g->trained_wordings}) {
      *v = spread_subset(*v, limit);
    }
  }
  return prompts;
}

FactScores score_facts(TransformerLM& model, const Tokenizer& tokenizer,
                       const FactPrompts& prompts) {
  FactScores scores;
  const auto& chance = prompts.chance_by_kind;
  for (const auto& [group, out] : {std::pair{&prompts.trained, &scores.trained},
                                   std::pair{&prompts.control, &scores.control}}) {
    out->heldout_wordings = exact_match(model, tokenizer, group->heldout_wordings, chance);
    out->questions = exact_match(model, tokenizer, group->questions, chance);
    out->trained_wordings = exact_match(model, tokenizer, group->trained_wordings, chance);
  }
  return scores;
}

nlohmann::json fact_metrics_json(const FactScores& s, int64_t samples) {
  nlohmann::json answers = nlohmann::json::array();
  for (const ExactMatch* m : {&s.trained.heldout_wordings, &s.trained.questions}) {
    int64_t shown = 0;
    for (const auto& a : m->answers) {
      if (shown++ >= samples) break;
      answers.push_back({{"prompt", a.prompt->prompt},
                         {"expected", a.prompt->answer},
                         {"predicted", a.predicted},
                         {"correct", a.correct}});
    }
  }
  return {{"wording_recall", s.trained.heldout_wordings.accuracy},
          {"wording_recall_control", s.control.heldout_wordings.accuracy},
          {"wording_chance", s.control.heldout_wordings.chance},
          {"exact_match", s.trained.questions.accuracy},
          {"exact_match_control", s.control.questions.accuracy},
          {"chance", s.control.questions.chance},
          {"verbatim_recall", s.trained.trained_wordings.accuracy},
          {"verbatim_recall_control", s.control.trained_wordings.accuracy},
          {"wording_prompts", s.trained.heldout_wordings.total},
          {"questions", s.trained.questions.total},
          {"control_wording_prompts", s.control.heldout_wordings.total},
          {"control_questions", s.control.questions.total},
          {"answers", answers}};
}

nlohmann::json evaluate_facts(TransformerLM& model, const Tokenizer& tokenizer,
                              const FactPrompts& prompts) {
  return fact_metrics_json(score_facts(model, tokenizer, prompts));
}

}  // namespace kvtune

// Held-out evaluation of a model on named sets: what `kvtune eval` and the fine-tuning report
// measure (docs/eval.md has the JSON).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/tokenizer.h"
#include "model/transformer.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace kvtune {

struct EvalRequest {
  // Corpus names or paths (as in recipes' data.domain / data.general): each set is the
  // held-out side of that corpus under `data`'s split.
  std::vector<std::string> sets;
  DataConfig data;          // held_out_fraction, split_salt, seq_len, max_entries
  int64_t batches = 20;     // evaluation batches per set (0: the whole held-out side)
  int64_t batch_size = 16;  // sequences per batch
};

// Throws kvtune::Error for an empty set list, an unknown or missing corpus, or a seq_len the
// model cannot take.
void validate_eval_request(const EvalRequest& request, const TransformerLM& model);

// Prompts asked per list of a fact set (held-out wordings, questions, trained wordings; trained
// and control group each): at most this many, an evenly spread subset (eval/facts.h).
inline constexpr int64_t kFactPromptLimit = 512;

// {"<set>": {"token_accuracy", "loss", "bits_per_byte", "examples", "tokens", "bytes",
// and for a fact set ("elements-facts", "eng-deu-facts") the fact metrics of eval/facts.h:
// "wording_recall", "exact_match", their controls and chance rates, ...}}.
nlohmann::json evaluate_sets(TransformerLM& model, const Tokenizer& tokenizer,
                             const EvalRequest& request);

// The extra metrics of a recipe's domain set for the fine-tuning report: the fact metrics when
// the domain is a fact set, none otherwise.
DomainMetricsFn domain_metrics_for(const Recipe& recipe);

}  // namespace kvtune

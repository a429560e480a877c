// Pretraining and fine-tuning runs: what `kvtune pretrain` and `kvtune finetune` execute.
// A run writes into its output folder: model/ (model folder, domain banks beside it),
// checkpoint.pt (atomic, every train.checkpoint_every steps; --resume continues from it),
// metrics.jsonl, recipe.yaml (the resolved recipe) and, for fine-tuning, report.json.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/tokenizer.h"
#include "model/transformer.h"
#include "train/lm_metrics.h"
#include "train/recipe.h"

namespace kvtune {

struct TrainOutcome {
  int64_t first_step = 0;  // > 0 when resumed
  int64_t steps = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  double final_loss = 0;
  int64_t trainable_parameters = 0;
};

struct EvalPair {
  LmMetrics domain;
  LmMetrics general;
};

struct FinetuneOutcome {
  TrainOutcome train;
  EvalPair before;  // the base model (with domain_bank.attach banks), no new domain bank
  EvalPair after;
  nlohmann::json report;  // what report.json holds (docs/eval.md); empty when interrupted
};

// Metrics beyond the language-model ones, merged into the domain set's "before" and "after" in
// report.json: exact match for fact corpora (eval/facts.h). Called without gradient, with the
// model in eval mode.
using DomainMetricsFn = std::function<nlohmann::json(TransformerLM&, const Tokenizer&)>;

TrainOutcome pretrain(const Recipe& recipe, const std::string& out_dir, bool resume);

// Writes report.json and report.md (the same, as a table) into out_dir when training completes.
FinetuneOutcome finetune(const Recipe& recipe, const std::string& out_dir, bool resume,
                         const DomainMetricsFn& domain_metrics = {});

// report.json rendered as Markdown: a table of every metric, before, after and change.
std::string report_markdown(const nlohmann::json& report);

// Stops a run after `steps` optimizer steps as if interrupted (tests of --resume); 0 = off.
void set_stop_after_for_testing(int64_t steps);

}  // namespace kvtune

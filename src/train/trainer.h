// Pretraining and fine-tuning runs: what `kvtune pretrain` and `kvtune finetune` execute.
// A run writes into its output folder: model/ (model folder, domain banks beside it),
// checkpoint.pt (atomic, every train.checkpoint_every steps; --resume continues from it),
// metrics.jsonl, recipe.yaml (the resolved recipe) and, for fine-tuning, report.json.
#pragma once

#include <string>

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
  EvalPair before;  // the base model, no domain bank
  EvalPair after;
};

TrainOutcome pretrain(const Recipe& recipe, const std::string& out_dir, bool resume);
FinetuneOutcome finetune(const Recipe& recipe, const std::string& out_dir, bool resume);

// Stops a run after `steps` optimizer steps as if interrupted (tests of --resume); 0 = off.
void set_stop_after_for_testing(int64_t steps);

}  // namespace kvtune

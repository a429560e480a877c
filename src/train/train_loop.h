// The training loop shared by pretraining and fine-tuning, and the evaluations it runs: batches
// from the training sets in turn, AdamW on the dense parameters, a row optimizer on the bank
// rows, the learning-rate schedule, periodic held-out evaluations and checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/lm_dataset.h"
#include "model/transformer.h"
#include "train/lm_metrics.h"
#include "train/recipe.h"
#include "train/train_state.h"

namespace kvtune {

struct TrainOutcome {
  int64_t first_step = 0;  // > 0 when resumed
  int64_t steps = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  double final_loss = 0;
  int64_t trainable_parameters = 0;
};

// Held-out sets evaluated during training, by name ("domain", "general").
using EvalSets = std::vector<std::pair<std::string, const LmDataset*>>;

// Mean next-token cross-entropy of `batch` [B, T + 1] (inputs and shifted targets).
torch::Tensor lm_loss(TransformerLM& model, const torch::Tensor& batch);

// The recipe's attention settings (attention.*, backward) on every memory layer.
void configure_attention(TransformerLM& model, const Recipe& r);

// The seed of the sampled estimators and backward on every memory layer.
void set_attention_seed(TransformerLM& model, uint64_t seed);

// Held-out metrics with the model in eval mode and the evaluation seed (0), so that evaluations
// of different runs and steps draw alike.
LmMetrics evaluate_held_out(TransformerLM& model, const LmDataset& data, const TrainConfig& t,
                            const TokenTable& tokens);

// Step i trains on train_sets[i mod size] (data.domain_mix). Writes metrics.jsonl and
// checkpoint.pt into out_dir; `resume` continues from checkpoint.pt when there is one.
TrainOutcome train_loop(const Recipe& r, TrainState& s,
                        const std::vector<const LmDataset*>& train_sets, const std::string& out_dir,
                        bool resume, const EvalSets& evals);

// Appends one line to out_dir/metrics.jsonl.
void append_metrics(const std::string& out_dir, const nlohmann::json& line);

// Stops a run after `steps` optimizer steps as if interrupted (tests of --resume); 0 = off.
void set_stop_after_for_testing(int64_t steps);

}  // namespace kvtune

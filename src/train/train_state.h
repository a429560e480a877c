// What one run trains, shared by the training loop, the checkpoints and the methods: dense
// parameters (AdamW), bank rows (a row optimizer: sparse row Adam or SGD) and the learned scale.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bank/indexed_bank.h"
#include "model/transformer.h"
#include "train/lm_metrics.h"

namespace kvtune {

struct TrainState {
  TransformerLM model{nullptr};
  std::vector<torch::Tensor> dense;                 // dense parameters that train
  std::vector<std::shared_ptr<IndexedBank>> banks;  // banks whose tensors train
  std::vector<torch::Tensor> bank_params;           // their keys/values that require grad, in order
  // The banks of `banks` whose rows are split across the ranks (memory parallelism, method
  // sparse): each rank holds and trains only its shard, whose gradient the sharded op already
  // summed over every rank's queries. Their rows are not summed, not compared across ranks, and
  // each rank checkpoints its own shard (checkpoint.h).
  std::vector<std::shared_ptr<IndexedBank>> split_banks;
  // Tensors a method keeps across steps (method sparse: which rows changed), checkpointed in
  // order and restored in place on resume.
  std::vector<torch::Tensor> method_state;
  TokenTable tokens;                   // token_table of the tokenizer
  torch::Tensor log_scale;             // attention.learn_scale: log c, shared by the memory layers
  std::string row_optimizer = "adam";  // make_row_optimizer name for bank_params
  // Called after backward and before the optimizers step (method sparse: keeps the gradient of
  // the rows it selects and drops the rest). Unset: every gradient is used.
  std::function<void(int64_t step)> after_backward;
};

// Whether `param` is the keys or values tensor of one of s.split_banks.
bool is_split_bank_param(const TrainState& s, const torch::Tensor& param);

}  // namespace kvtune

// The `lora` baseline: low-rank adapters on every linear of the self-attention (q, k, v, out)
// and the feed-forward (up, down) of every block, everything else frozen.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/lora_linear.h"
#include "model/transformer.h"

namespace kvtune {

// Adds the adapters (see LoraLinearImpl), sets requires_grad false on every other parameter of
// the model, and returns the adapter parameters (the ones to train). A fresh adapter leaves the
// logits unchanged. Memory layers get no adapter; banks are not parameters and keep their state.
std::vector<torch::Tensor> apply_lora(TransformerLM& model, int64_t rank, double alpha);

// True when apply_lora has put adapters on the model.
bool has_lora(const TransformerLM& model);

// Folds every adapter into its Linear's weight and removes it: the model then has the plain
// parameter set (save_model / load_model) and computes the same function up to rounding.
// requires_grad is left as it is.
void merge_lora(TransformerLM& model);

}  // namespace kvtune

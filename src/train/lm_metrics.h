// Held-out language-model metrics: mean loss (nats per token) and next-token accuracy.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "train/lm_dataset.h"

namespace kvtune {

struct LmMetrics {
  double loss = 0.0;            // mean cross-entropy, nats per predicted token
  double token_accuracy = 0.0;  // fraction of positions whose argmax is the next token
  int64_t tokens = 0;           // predicted positions counted
};

// logits_fn: tokens [B, T] -> logits [B, T, V]. Evaluates the first `batches` evaluation
// batches (0 = the whole set), without gradient.
LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size);

}  // namespace kvtune

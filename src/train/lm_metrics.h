// Held-out language-model metrics: mean loss (nats per token), next-token accuracy and bits per
// byte of text.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/lm_dataset.h"
#include "model/tokenizer.h"

namespace kvtune {

// Sums over predicted positions, so that batches can be added up before dividing.
struct LmCounts {
  double nats = 0.0;    // summed cross-entropy of the targets
  int64_t correct = 0;  // positions whose argmax is the target
  int64_t tokens = 0;   // positions counted
  int64_t bytes = 0;    // text bytes the targets stand for (special tokens: none)
  LmCounts& operator+=(const LmCounts& o);
};

struct LmMetrics {
  double loss = 0.0;            // nats / tokens
  double token_accuracy = 0.0;  // correct / tokens
  double bits_per_byte = 0.0;   // nats / ln(2) / bytes: comparable across tokenizers
  int64_t tokens = 0;
  int64_t bytes = 0;
  int64_t sequences = 0;  // evaluation windows scored
};

// Bytes of text each token id decodes to (Tokenizer::decode of the id alone): [vocab] int64.
torch::Tensor token_byte_lengths(const Tokenizer& tokenizer);

// logits [N, V] (any float type), targets [N] int64, token_bytes [V] int64.
LmCounts count_predictions(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& token_bytes);

// Divides the sums; a set with no tokens gives zeros (and bits_per_byte 0 when no bytes).
LmMetrics metrics_from_counts(const LmCounts& counts, int64_t sequences);

// {"token_accuracy", "loss", "bits_per_byte", "examples" (sequences), "tokens", "bytes"}:
// docs/eval.md.
nlohmann::json to_json(const LmMetrics& m);

// logits_fn: tokens [B, T] -> logits [B, T, V]. Evaluates the first `batches` evaluation
// batches (0 = the whole set), without gradient.
LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size,
                      const torch::Tensor& token_bytes);

}  // namespace kvtune

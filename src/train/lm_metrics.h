// Held-out language-model metrics: mean loss (nats per token), next-token accuracy, bits per
// byte of text, and whole-word accuracy. The last two are comparable across tokenizers (a byte
// model and a subword model of the same text); loss and token accuracy are not.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/lm_dataset.h"
#include "model/tokenizer.h"

namespace kvtune {

// Sums over predicted positions, so that batches can be added up before dividing.
struct LmCounts {
  double nats = 0.0;          // summed cross-entropy of the targets
  int64_t correct = 0;        // positions whose argmax is the target
  int64_t tokens = 0;         // positions counted
  int64_t bytes = 0;          // text bytes the targets stand for (special tokens: none)
  int64_t words = 0;          // whole words scored (count_words)
  int64_t words_correct = 0;  // of them, every token predicted right
  LmCounts& operator+=(const LmCounts& o);
};

struct LmMetrics {
  double loss = 0.0;            // nats / tokens
  double token_accuracy = 0.0;  // correct / tokens
  double bits_per_byte = 0.0;   // nats / ln(2) / bytes: comparable across tokenizers
  double word_accuracy = 0.0;   // words_correct / words: comparable across tokenizers
  int64_t tokens = 0;
  int64_t words = 0;
  int64_t bytes = 0;
  int64_t sequences = 0;  // evaluation windows scored
};

// What each token id stands for as text: Tokenizer::decode of the id alone.
struct TokenTable {
  torch::Tensor byte_lengths;      // [vocab] int64: bytes of each id's text (specials: 0)
  std::vector<std::string> texts;  // [vocab]: each id's text
};

// The table of a tokenizer.
TokenTable token_table(const Tokenizer& tokenizer);

// Bytes of text each token id decodes to: token_table(tokenizer).byte_lengths.
torch::Tensor token_byte_lengths(const Tokenizer& tokenizer);

// logits [N, V] (any float type), targets [N] int64, token_bytes [V] int64; predictions [N],
// when given, is logits' argmax already computed.
LmCounts count_predictions(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& token_bytes, const torch::Tensor& predictions = {});

// Whole-word accuracy under teacher forcing, the accuracy unit a byte and a subword model share.
// A word is a maximal run of bytes other than ASCII whitespace in the targets' text (`texts` of
// each target id); a special token (no text) ends a word. A word is correct when every target
// token holding one of its bytes is predicted right (its argmax is the target). Only words whose
// both ends lie inside the window count: one that `first_input` (the token before the first
// target) runs into, or that is still open at the window's end, is skipped.
// targets, predictions: [T] int64 of one window; returns words and words_correct only.
LmCounts count_words(int64_t first_input, const torch::Tensor& targets,
                     const torch::Tensor& predictions, const std::vector<std::string>& texts);

// Divides the sums; a set with no tokens gives zeros (and bits_per_byte 0 when no bytes).
LmMetrics metrics_from_counts(const LmCounts& counts, int64_t sequences);

// {"token_accuracy", "loss", "bits_per_byte", "word_accuracy", "examples" (sequences), "tokens",
// "bytes", "words"}: docs/eval.md.
nlohmann::json to_json(const LmMetrics& m);

// logits_fn: tokens [B, T] -> logits [B, T, V]. Evaluates the first `batches` evaluation
// batches (0 = the whole set), without gradient.
LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size,
                      const TokenTable& tokens);

}  // namespace kvtune

// Greedy continuation of prompts, batched: what exact-match evaluation and `kvtune generate` use.
#pragma once

#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace kvtune {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  int64_t eos_id = -1;      // a row stops after producing it (it is not returned); -1: never
  int64_t pad_id = 0;       // fills rows shorter than the longest in the batch
  int64_t batch_size = 64;  // prompts run together
};

// For each prompt (token ids, bos included when wanted), the greedy (argmax) continuation of at
// most max_new_tokens ids. Prompts in one batch are right-padded: the model is causal, so padding
// after a row's last token never changes that row's predictions. A prompt plus its continuation
// must fit the model's max_seq_len (longer prompts are a kvtune::Error).
std::vector<std::vector<int64_t>> greedy_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options);

}  // namespace kvtune

// Continuation of prompts, batched: greedy (what exact-match evaluation uses) or sampled with a
// temperature and a top-k cut (what `kvtune generate` offers besides greedy).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "model/transformer.h"

namespace kvtune {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  int64_t eos_id = -1;      // a row stops after producing it (it is not returned); -1: never
  int64_t pad_id = 0;       // fills rows shorter than the longest in the batch
  int64_t batch_size = 64;  // prompts run together
};

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
  int64_t top_k = 0;         // > 0: sample among the top_k most likely tokens only; 0: all
  uint64_t seed = 0;         // std::mt19937_64 seed: the same seed gives the same continuation
};

// For each prompt (token ids, bos included when wanted), the greedy (argmax) continuation of at
// most max_new_tokens ids. Decoding is incremental (TransformerLM::forward_cached): each new token
// costs one position, not the whole prefix; prompts of different lengths share a batch. A prompt
// plus its continuation must fit the model's max_seq_len (longer prompts are a kvtune::Error).
std::vector<std::vector<int64_t>> greedy_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options);

// As greedy_continue, with each next token drawn by sample_next_token from a generator per prompt,
// seeded with (sampling.seed, the prompt's number). temperature 0 is greedy_continue exactly.
// The same prompts, options and seed give the same continuations on every run, thread count and
// batch size.
std::vector<std::vector<int64_t>> sample_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options,
                                                  const SamplingOptions& sampling);

// One draw from softmax(logits / temperature) restricted to the top_k largest logits (ties at
// the cut broken towards the smaller id), by inverse CDF over a uniform from `rng`, computed in
// float64. logits: [V] float; temperature must be > 0.
int64_t sample_next_token(const torch::Tensor& logits, const SamplingOptions& sampling,
                          std::mt19937_64& rng);

}  // namespace kvtune

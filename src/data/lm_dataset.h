// Token streams for language-model training and evaluation. Training batches are a pure
// function of (seed, step), so a resumed run sees exactly the batches it would have seen.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace kvtune {

class LmDataset {
 public:
  // docs: token ids of each document (already with bos/eos). seq_len: tokens a model sees;
  // batches hold seq_len + 1 tokens (inputs and shifted targets).
  LmDataset(const std::vector<std::vector<int64_t>>& docs, int64_t seq_len);

  int64_t num_tokens() const { return static_cast<int64_t>(stream_.size()); }
  int64_t seq_len() const { return seq_len_; }

  // [batch, seq_len + 1] windows at random offsets, deterministic for (seed, step).
  torch::Tensor train_batch(int64_t batch, uint64_t seed, int64_t step) const;

  // Evaluation: consecutive non-overlapping windows, in order; index counts batches.
  int64_t num_eval_windows() const;
  torch::Tensor eval_batch(int64_t index, int64_t batch) const;

 private:
  std::vector<int64_t> stream_;
  int64_t seq_len_;
};

}  // namespace kvtune

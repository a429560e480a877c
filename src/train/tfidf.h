// Which base-bank slots a sparse fine-tuning step trains (Lin et al. 2025, sparse memory
// fine-tuning): the batch's retrieved slots ranked by TF-IDF against background batches.
// With c_s = how often the batch retrieved slot s (positions x heads x k, one memory layer),
// df_s = the background batches that retrieved s, |B| = the background batches:
//   score_s = (c_s / sum_j c_j) * log((|B| + 1) / (df_s + 1))
// T = the t slots of largest score among those with c_s > 0 (ties: the smaller slot first).
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace kvtune {

// score_s for every slot ([N] float64; 0 where c_s = 0). counts and df: [N] int64.
torch::Tensor tfidf_scores(const torch::Tensor& counts, const torch::Tensor& df,
                           int64_t background_batches);

// The rows of T, ascending ([min(t, #retrieved)] int64).
torch::Tensor top_t_slots(const torch::Tensor& counts, const torch::Tensor& df,
                          int64_t background_batches, int64_t t);

}  // namespace kvtune

// The "sampled" backward (docs/sampled-attention.md, Backward choices): the shared-sample estimator
// of the full-softmax gradient, any forward estimator's output passed through unchanged.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "attention/knn_attention.h"

namespace kvtune::impl {

// The stream family of the backward draws: query row r draws from
// stream_seed(stream_seed(options.seed, kBackwardStream), r), independent of the forward's
// stream_seed(options.seed, r).
constexpr uint64_t kBackwardStream = 0x6261636b77617264ULL;  // "backward"

// `output` [R, dv] (the forward estimate, no grad) returned with a backward that, per query row
// r, draws s = options.backward_samples exact samples j_1..j_s ~ P_r (lazy Gumbel over every key
// of every bank, starting from `top_ids` [R, k], the exact top-k) and, with
// D_r = dO_r . output_r and g = c (dO_r . v_j - D_r), accumulates
//   dV_j += dO_r / s,   dq_r += g k_j / s,   dK_j += g q_r / s.
// q_unit [R, dk] unit rows. Gradients go to q_unit and to every bank key/value tensor that
// requires grad (sparse COO over the sampled rows); deterministic for a seed.
torch::Tensor with_sampled_backward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                    const KnnAttentionOptions& options, const torch::Tensor& output,
                                    const torch::Tensor& top_ids);

}  // namespace kvtune::impl

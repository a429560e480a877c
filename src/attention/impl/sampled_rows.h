// The driver shared by the sampled estimators ("gumbel", "topk+tail"): the merged exact top-k
// of all banks per query row (as "topk" computes it), then a per-row function with the row's
// own RNG stream and score routine, in parallel over rows, in double; the output converted to the
// op's dtype.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "attention/impl/bank_rows.h"
#include "attention/knn_attention.h"
#include "attention/lazy_gumbel.h"

namespace kvtune::impl {

struct SampledRow {
  const double* q;           // [dk], unit
  const int64_t* top_ids;    // [k], -1 padded
  const double* top_scores;  // [k], re-scored by BankRows::score_ids; -inf where id is -1
  int64_t k;
  SamplerRng* rng;       // seeded with stream_seed(options.seed, row)
  double* out;           // [dv], zeroed
  const ScoreFn* score;  // scores of any global ids for this row (BankRows::scorer)
};

using SampledRowFn = std::function<void(const BankRows& rows, const SampledRow& row)>;

// The merged exact top-k of all banks per query row (no softmax, no aggregation): the search's
// candidates scored once by BankRows::score_ids and the best k kept by those scores, ties to the
// smaller id. Every comparison of a tail score with the top-k's minimum then uses the same
// arithmetic. (The "topk" estimator's kernel uses the same inner product, kernels::dot_f32 for
// float32 banks, but rounds the scaled score to the bank's dtype, so two keys whose scores round
// to the same float32 may be ordered apart by the two.)
struct SampledTop {
  torch::Tensor q;         // [R, dk] float64, the unit query rows
  torch::Tensor ids;       // [R, k] int64 global ids, -1 padded
  torch::Tensor scores;    // [R, k] rescored, in the op's dtype
  torch::Tensor rescored;  // [R, k] float64 from BankRows::score_ids; -inf where id is -1
};

// Throws kvtune::Error when autograd would need a backward, as sampled_forward does.
SampledTop sampled_top(const std::string& name, const torch::Tensor& q_unit,
                       const std::vector<BankView>& banks, const KnnAttentionOptions& options,
                       const BankRows& rows);

// No autograd of its own (knn_attention runs it without grad and attaches options.backward):
// throws kvtune::Error when autograd would need a backward (grad mode on and the
// queries or a bank tensor require grad), naming the estimator.
KnnAttentionResult sampled_forward(const std::string& name, const torch::Tensor& q_unit,
                                   const std::vector<BankView>& banks,
                                   const KnnAttentionOptions& options, const SampledRowFn& fn);

}  // namespace kvtune::impl

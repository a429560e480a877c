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

// No autograd of its own (knn_attention runs it without grad and attaches options.backward):
// throws kvtune::Error when autograd would need a backward (grad mode on and the
// queries or a bank tensor require grad), naming the estimator.
KnnAttentionResult sampled_forward(const std::string& name, const torch::Tensor& q_unit,
                                   const std::vector<BankView>& banks,
                                   const KnnAttentionOptions& options, const SampledRowFn& fn);

}  // namespace kvtune::impl

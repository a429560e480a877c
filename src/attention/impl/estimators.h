// Constructors of the built-in estimators; the public entry point is make_estimator().
#pragma once

#include <memory>

#include "attention/estimator.h"

namespace kvtune::impl {

std::unique_ptr<Estimator> make_topk_estimator();
std::unique_ptr<Estimator> make_dense_estimator();
std::unique_ptr<Estimator> make_gumbel_estimator();
std::unique_ptr<Estimator> make_topk_tail_estimator();

// The result of R = prod(lead dims) rows reshaped to the queries' lead dims [..., k or d_v].
KnnAttentionResult with_lead_dims(KnnAttentionResult r, const torch::Tensor& queries);

// "topk" over given candidates (int64 [R, C] global ids, -1 = none) instead of a search: the
// backward of a step reuses its forward's retrieval, so a step searches once.
KnnAttentionResult topk_from_candidates(const torch::Tensor& q_unit,
                                        const std::vector<BankView>& banks,
                                        const KnnAttentionOptions& options,
                                        const torch::Tensor& candidates);

}  // namespace kvtune::impl

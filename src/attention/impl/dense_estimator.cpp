// "dense": softmax over every key of every bank with plain autograd. The reference the other
// estimators are tested against; O(N) per query, for tests and small banks.
#include <limits>

#include "attention/impl/estimators.h"

namespace kvtune::impl {
namespace {

class DenseEstimator : public Estimator {
 public:
  std::string name() const override { return "dense"; }

  KnnAttentionResult forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                             const KnnAttentionOptions& options) const override {
    std::vector<torch::Tensor> keys, values;
    for (const auto& b : banks) {
      keys.push_back(b.keys);
      values.push_back(b.values);
    }
    const auto all_keys = torch::cat(keys, 0);
    const auto scores = options.scale * q_unit.matmul(all_keys.t());
    const auto output = torch::softmax(scores, -1).matmul(torch::cat(values, 0));

    // The top-k of the full scores, for inspection (padded when k exceeds the keys).
    const int64_t n = all_keys.size(0);
    const int64_t kept = std::min(options.k, n);
    auto top = scores.detach().topk(kept, -1);
    auto top_scores = std::get<0>(top);
    auto top_ids = std::get<1>(top);
    if (kept < options.k) {
      const int64_t pad = options.k - kept;
      top_scores = torch::cat(
          {top_scores, torch::full({scores.size(0), pad}, -std::numeric_limits<double>::infinity(),
                                   top_scores.options())},
          1);
      top_ids = torch::cat({top_ids, torch::full({scores.size(0), pad}, -1, top_ids.options())}, 1);
    }
    return {output, top_ids, top_scores};
  }
};

}  // namespace

std::unique_ptr<Estimator> make_dense_estimator() {
  return std::make_unique<DenseEstimator>();
}

}  // namespace kvtune::impl

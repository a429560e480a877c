// "topk+tail": the top-k set with weight 1 plus `tail_samples` keys drawn uniformly from outside
// it with weight (n - k) / l (Mussmann's estimator; docs/sampled-attention.md, Estimators):
// O^ = sum w_j exp(s_j) v_j / sum w_j exp(s_j). Forward only.
#include <algorithm>
#include <cmath>

#include "attention/impl/estimators.h"
#include "attention/impl/sampled_rows.h"
#include "attention/topk_tail.h"
#include "common/check.h"

namespace kvtune::impl {
namespace {

class TopkTailEstimator : public Estimator {
 public:
  std::string name() const override { return "topk+tail"; }

  KnnAttentionResult forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                             const KnnAttentionOptions& options) const override {
    KVT_CHECK(options.tail_samples >= 0, "estimator 'topk+tail': tail_samples must be >= 0, got ",
              options.tail_samples);
    return sampled_forward(
        name(), q_unit, banks, options, [&](const BankRows& rows, const SampledRow& row) {
          const auto s = topk_tail_sample(row.top_ids, row.top_scores, row.k, rows.total(),
                                          options.tail_samples, *row.score, *row.rng);
          const double shift = *std::max_element(s.scores.begin(), s.scores.end());
          std::vector<double> w(s.ids.size());
          double z = 0;
          for (size_t j = 0; j < s.ids.size(); ++j)
            z += w[j] = s.weights[j] * std::exp(s.scores[j] - shift);
          for (size_t j = 0; j < s.ids.size(); ++j) rows.add_value(s.ids[j], w[j] / z, row.out);
        });
  }
};

}  // namespace

std::unique_ptr<Estimator> make_topk_tail_estimator() {
  return std::make_unique<TopkTailEstimator>();
}

}  // namespace kvtune::impl

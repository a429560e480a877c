// "gumbel": the output O = E_{j~P}[v_j] estimated from exact lazy Gumbel samples of the
// softmax over every key of every bank (docs/sampled-attention.md, Estimators): `samples` draws per
// query row in `groups` groups, the per-coordinate median of the group means. Forward only.
#include <algorithm>

#include "attention/impl/estimators.h"
#include "attention/impl/sampled_rows.h"
#include "attention/lazy_gumbel.h"
#include "common/check.h"

namespace kvtune::impl {
namespace {

class GumbelEstimator : public Estimator {
 public:
  std::string name() const override { return "gumbel"; }

  KnnAttentionResult forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                             const KnnAttentionOptions& options) const override {
    const int64_t samples = options.samples, groups = options.groups;
    KVT_CHECK(samples > 0, "estimator 'gumbel': samples must be positive, got ", samples);
    KVT_CHECK(groups > 0 && groups <= samples, "estimator 'gumbel': groups must be in [1, samples",
              " = ", samples, "], got ", groups);
    return sampled_forward(
        name(), q_unit, banks, options, [&](const BankRows& rows, const SampledRow& row) {
          const int64_t dv = rows.dv();
          LazyGumbelSampler sampler(row.top_ids, row.top_scores, row.k, rows.total(), *row.score);
          std::vector<int64_t> drawn(static_cast<size_t>(samples));
          sampler.draw(samples, *row.rng, drawn.data());  // every tail scored in one pass
          std::vector<double> means(static_cast<size_t>(groups * dv), 0.0);
          for (int64_t g = 0, at = 0; g < groups; ++g) {
            const int64_t size = (g + 1) * samples / groups - g * samples / groups;
            for (int64_t i = 0; i < size; ++i, ++at) {
              rows.add_value(drawn[at], 1.0 / size, means.data() + g * dv);
            }
          }
          std::vector<double> column(static_cast<size_t>(groups));
          for (int64_t c = 0; c < dv; ++c) {
            for (int64_t g = 0; g < groups; ++g) column[g] = means[g * dv + c];
            std::sort(column.begin(), column.end());
            row.out[c] = groups % 2 == 1 ? column[groups / 2]
                                         : 0.5 * (column[groups / 2 - 1] + column[groups / 2]);
          }
        });
  }
};

}  // namespace

std::unique_ptr<Estimator> make_gumbel_estimator() {
  return std::make_unique<GumbelEstimator>();
}

}  // namespace kvtune::impl

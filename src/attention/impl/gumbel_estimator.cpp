// "gumbel": the output O = E_{j~P}[v_j] estimated from exact lazy Gumbel samples of the
// softmax over every key of every bank (docs/sampled-attention.md, Estimators): `samples` draws per
// query row in `groups` groups, the per-coordinate median of the group means. Forward only.
#include <algorithm>

#include "attention/impl/estimators.h"
#include "attention/impl/gumbel_block.h"
#include "attention/impl/sampled_rows.h"
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
    const BankRows rows(banks);
    const SampledTop top = sampled_top(name(), q_unit, banks, options, rows);
    const int64_t R = top.q.size(0), k = options.k, dv = rows.dv();
    // Every row's draws at once: the blocks of rows share their tail keys' gathers.
    std::vector<int64_t> drawn(static_cast<size_t>(R * samples));
    lazy_gumbel_draws(rows, top.q.data_ptr<double>(), top.ids.data_ptr<int64_t>(),
                      top.rescored.data_ptr<double>(), R, k, samples, options.scale, options.seed,
                      drawn.data(), nullptr);
    auto out = torch::empty({R, dv}, torch::kFloat64);
    double* op = out.data_ptr<double>();
#pragma omp parallel
    {
      std::vector<double> means(static_cast<size_t>(groups * dv));
      std::vector<double> column(static_cast<size_t>(groups));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        std::fill(means.begin(), means.end(), 0.0);
        const int64_t* mine = drawn.data() + r * samples;
        for (int64_t g = 0, at = 0; g < groups; ++g) {
          const int64_t size = (g + 1) * samples / groups - g * samples / groups;
          for (int64_t i = 0; i < size; ++i, ++at) {
            rows.add_value(mine[at], 1.0 / size, means.data() + g * dv);
          }
        }
        for (int64_t c = 0; c < dv; ++c) {
          for (int64_t g = 0; g < groups; ++g) column[g] = means[g * dv + c];
          std::sort(column.begin(), column.end());
          op[r * dv + c] = groups % 2 == 1 ? column[groups / 2]
                                           : 0.5 * (column[groups / 2 - 1] + column[groups / 2]);
        }
      }
    }
    return {out.to(top.scores.scalar_type()), top.ids, top.scores};
  }
};

}  // namespace

std::unique_ptr<Estimator> make_gumbel_estimator() {
  return std::make_unique<GumbelEstimator>();
}

}  // namespace kvtune::impl

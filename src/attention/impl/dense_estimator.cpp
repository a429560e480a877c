// "dense": softmax over every key of every bank. The reference the other estimators are tested
// against; O(N) per query. With autograd it is plain torch ops (the gradient reference); without,
// a blocked online softmax that reads each key block once per block of queries.
#include <algorithm>
#include <limits>

#include "attention/impl/estimators.h"

namespace kvtune::impl {
namespace {

class DenseEstimator : public Estimator {
 public:
  std::string name() const override { return "dense"; }

  KnnAttentionResult forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                             const KnnAttentionOptions& options) const override {
    if (!needs_gradient(q_unit, banks)) return blocked(q_unit, banks, options);
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

 private:
  // Without autograd: blocks of kQueryBlock queries against blocks of kKeyBlock keys of each
  // bank, in place (no concatenated copy of the banks, no [R, N] score matrix). Each key block
  // is read once per query block by two matrix products (scores, then probabilities x values),
  // with the softmax kept online: a running maximum m, normalizer l and unnormalized output
  // acc per query, rescaled by exp(m_old - m_new) when the maximum grows. The top-k is merged
  // block by block.
  static KnnAttentionResult blocked(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                    const KnnAttentionOptions& options) {
    constexpr int64_t kQueryBlock = 256, kKeyBlock = 8192;
    const auto q = q_unit.detach().contiguous();
    const int64_t R = q.size(0), dv = banks[0].values.size(1), k = options.k;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    auto output = torch::empty({R, dv}, q.options());
    auto top_scores = torch::empty({R, k}, q.options());
    auto top_ids = torch::empty({R, k}, torch::kInt64);
    for (int64_t first = 0; first < R; first += kQueryBlock) {
      const int64_t rb = std::min(kQueryBlock, R - first);
      const auto qb = q.narrow(0, first, rb);
      auto m = torch::full({rb, 1}, neg_inf, q.options());
      auto l = torch::zeros({rb, 1}, q.options());
      auto acc = torch::zeros({rb, dv}, q.options());
      auto best_scores = torch::full({rb, k}, neg_inf, q.options());
      auto best_ids = torch::full({rb, k}, -1, torch::kInt64);
      int64_t offset = 0;
      for (const auto& bank : banks) {
        const auto keys = bank.keys.detach(), values = bank.values.detach();
        for (int64_t start = 0; start < bank.size(); start += kKeyBlock) {
          const int64_t nb = std::min(kKeyBlock, bank.size() - start);
          const auto scores = qb.mm(keys.narrow(0, start, nb).t()).mul_(options.scale);
          const auto m_new = torch::maximum(m, std::get<0>(scores.max(1, /*keepdim=*/true)));
          const auto rescale = (m - m_new).exp_();
          const auto p = (scores - m_new).exp_();
          l = l.mul_(rescale).add_(p.sum(1, /*keepdim=*/true));
          acc = acc.mul_(rescale).addmm_(p, values.narrow(0, start, nb));
          m = m_new;
          const auto block_top = scores.topk(std::min(k, nb), 1);
          const auto merged = torch::cat({best_scores, std::get<0>(block_top)}, 1).topk(k, 1);
          best_ids = torch::cat({best_ids, std::get<1>(block_top).add_(offset + start)}, 1)
                         .gather(1, std::get<1>(merged));
          best_scores = std::get<0>(merged);
        }
        offset += bank.size();
      }
      output.narrow(0, first, rb).copy_(acc.div_(l));
      top_scores.narrow(0, first, rb).copy_(best_scores);
      top_ids.narrow(0, first, rb).copy_(best_ids);
    }
    return {output, top_ids, top_scores};
  }
};

}  // namespace

std::unique_ptr<Estimator> make_dense_estimator() {
  return std::make_unique<DenseEstimator>();
}

}  // namespace kvtune::impl

#include "bank/bank_query.h"

#include <cmath>

#include "common/check.h"

namespace kvtune {

KnnAttentionResult query_banks(const std::vector<std::shared_ptr<IndexedBank>>& banks,
                               const torch::Tensor& queries, KnnAttentionOptions options) {
  KVT_CHECK(!banks.empty(), "bank query needs at least one bank");
  KVT_CHECK(queries.dim() == 2, "queries must be [M, d_k], got ", queries.dim(), " dims");
  if (options.scale == 0.0) {
    options.scale = banks[0]->bank().effective_scale();
    for (const auto& b : banks) {
      KVT_CHECK(std::abs(b->bank().effective_scale() - options.scale) <= 1e-9 * options.scale,
                "banks '", banks[0]->bank().meta.name, "' and '", b->bank().meta.name,
                "' use different score scales (", options.scale, " vs ",
                b->bank().effective_scale(), "): pass --scale to choose one");
    }
  }
  torch::NoGradGuard no_grad;
  std::vector<BankView> views;
  for (const auto& b : banks) views.push_back(b->view());
  return knn_attention(queries.to(torch::kFloat32).contiguous(), views, options);
}

}  // namespace kvtune

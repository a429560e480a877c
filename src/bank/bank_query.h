// Querying banks directly (no model): what `kvtune bank query` runs.
#pragma once

#include <memory>
#include <vector>

#include "attention/knn_attention.h"
#include "bank/indexed_bank.h"

namespace kvtune {

// queries [M, d_k] (one head). With options.scale == 0 the banks' own score scale is used (all
// banks must agree). No gradient is recorded.
KnnAttentionResult query_banks(const std::vector<std::shared_ptr<IndexedBank>>& banks,
                               const torch::Tensor& queries, KnnAttentionOptions options);

}  // namespace kvtune

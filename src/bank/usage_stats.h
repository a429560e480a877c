// How evenly a bank's retrievals spread over its slots: the usage analytics of
// `kvtune bank inspect` (docs/banks.md).
#pragma once

#include <cstdint>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

namespace kvtune {

struct UsageStats {
  int64_t slots = 0;
  int64_t total = 0;           // retrievals counted over all slots
  int64_t max = 0;             // of the busiest slot
  double fraction_used = 0.0;  // slots with usage > 0, over all slots
  // Gini coefficient of the counts over all slots: 0 when every slot is used equally, (n-1)/n
  // when one slot takes everything. sum_i sum_j |u_i - u_j| / (2 n^2 mean).
  double gini = 0.0;
  // KL(p || uniform) in nats, p_j = u_j / total: log(n) - H(p); 0 for even use, log(n) at most.
  double kl_uniform = 0.0;
  // Share of all retrievals taken by the ceil(1% of slots) busiest slots.
  double top1_share = 0.0;
  int64_t top1_slots = 0;
  // gini, kl_uniform and top1_share are NaN (null in JSON) when nothing was counted (total 0):
  // a bank never used has no distribution of use.
};

// usage [N] int64 (>= 0).
UsageStats usage_stats(const torch::Tensor& usage);

nlohmann::json to_json(const UsageStats& stats);

}  // namespace kvtune

#include "bank/usage_stats.h"

#include <cmath>
#include <limits>

#include "common/check.h"

namespace kvtune {

UsageStats usage_stats(const torch::Tensor& usage) {
  KVT_CHECK(usage.defined() && usage.dim() == 1 && usage.scalar_type() == torch::kInt64,
            "usage_stats: usage must be [N] int64");
  UsageStats s;
  s.slots = usage.size(0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  s.gini = s.kl_uniform = s.top1_share = nan;
  if (s.slots == 0) return s;
  s.total = usage.sum().item<int64_t>();
  s.max = usage.max().item<int64_t>();
  s.fraction_used = usage.gt(0).sum().item<int64_t>() / static_cast<double>(s.slots);
  s.top1_slots = (s.slots + 99) / 100;
  if (s.total == 0) return s;

  const double n = static_cast<double>(s.slots);
  const double total = static_cast<double>(s.total);
  const auto sorted = std::get<0>(usage.to(torch::kFloat64).sort());  // ascending
  // Sorted form of the mean absolute difference: sum_i (2i - n - 1) u_(i) / (n * total), i from 1.
  const auto rank = torch::arange(1, s.slots + 1, torch::kFloat64);
  s.gini = (sorted * (2.0 * rank - n - 1.0)).sum().item<double>() / (n * total);
  const auto p = sorted / total;
  const auto nonzero = p.masked_select(p.gt(0));
  s.kl_uniform = (nonzero * (nonzero * n).log()).sum().item<double>();
  s.top1_share = sorted.slice(0, s.slots - s.top1_slots).sum().item<double>() / total;
  return s;
}

nlohmann::json to_json(const UsageStats& s) {
  const auto number = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  return {{"total", s.total},
          {"max", s.max},
          {"fraction_used", s.fraction_used},
          {"gini", number(s.gini)},
          {"kl_uniform_nats", number(s.kl_uniform)},
          {"top1pct_share", number(s.top1_share)},
          {"top1pct_slots", s.top1_slots}};
}

}  // namespace kvtune

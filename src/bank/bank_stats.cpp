#include "bank/bank_stats.h"

#include <sstream>

namespace kvtune {

BankStats compute_bank_stats(const Bank& bank) {
  torch::NoGradGuard no_grad;
  BankStats s;
  s.name = bank.meta.name;
  s.size = bank.size();
  s.key_dim = bank.meta.key_dim;
  s.value_dim = bank.meta.value_dim;
  s.trainable = bank.meta.trainable;
  s.score_scale = bank.effective_scale();
  s.index_factory = bank.meta.index_factory;
  s.bytes =
      bank.keys.nbytes() + bank.values.nbytes() + bank.slot_ids.nbytes() + bank.usage.nbytes();
  s.usage = usage_stats(bank.usage);
  s.origin_sources = static_cast<int64_t>(bank.origin.sources.size());
  if (s.size == 0) return s;
  const auto norms = bank.keys.to(torch::kFloat64).norm(2, 1);
  s.key_norm_min = norms.min().item<double>();
  s.key_norm_max = norms.max().item<double>();
  s.key_norm_mean = norms.mean().item<double>();
  const auto v = bank.values.to(torch::kFloat64);
  s.value_mean = v.mean().item<double>();
  s.value_std = v.numel() > 1 ? v.std().item<double>() : 0.0;
  s.value_min = v.min().item<double>();
  s.value_max = v.max().item<double>();
  s.value_norm_mean = v.norm(2, 1).mean().item<double>();
  return s;
}

nlohmann::json to_json(const BankStats& s) {
  return {
      {"name", s.name},
      {"size", s.size},
      {"key_dim", s.key_dim},
      {"value_dim", s.value_dim},
      {"trainable", s.trainable},
      {"score_scale", s.score_scale},
      {"index_factory", s.index_factory},
      {"bytes", s.bytes},
      {"key_norm", {{"min", s.key_norm_min}, {"max", s.key_norm_max}, {"mean", s.key_norm_mean}}},
      {"values",
       {{"mean", s.value_mean},
        {"std", s.value_std},
        {"min", s.value_min},
        {"max", s.value_max},
        {"row_norm_mean", s.value_norm_mean}}},
      {"usage", to_json(s.usage)},
      {"origin_sources", s.origin_sources},
  };
}

std::string to_text(const BankStats& s) {
  std::ostringstream os;
  os << "bank        " << s.name << (s.trainable ? " (trainable)" : " (frozen)") << "\n"
     << "slots       " << s.size << "\n"
     << "dims        key " << s.key_dim << ", value " << s.value_dim << "\n"
     << "scale       " << s.score_scale << "\n"
     << "index       " << (s.index_factory.empty() ? "(none saved)" : s.index_factory) << "\n"
     << "memory      " << s.bytes / (1024.0 * 1024.0) << " MiB\n"
     << "key norms   min " << s.key_norm_min << ", max " << s.key_norm_max << ", mean "
     << s.key_norm_mean << "\n"
     << "values      mean " << s.value_mean << ", std " << s.value_std << ", min " << s.value_min
     << ", max " << s.value_max << ", row norm mean " << s.value_norm_mean << "\n"
     << "usage       total " << s.usage.total << ", slots used " << 100.0 * s.usage.fraction_used
     << "%, max " << s.usage.max << "\n";
  if (s.usage.total > 0) {
    os << "spread      Gini " << s.usage.gini << ", KL(usage || uniform) " << s.usage.kl_uniform
       << " nats, top 1% of slots (" << s.usage.top1_slots << ") take "
       << 100.0 * s.usage.top1_share << "%\n";
  } else {
    os << "spread      n/a (no retrieval counted: usage is 0 everywhere)\n";
  }
  if (s.origin_sources > 0) os << "origin      merged from " << s.origin_sources << " banks\n";
  return os.str();
}

}  // namespace kvtune

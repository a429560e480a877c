// Summary statistics of a bank, for `kvtune bank inspect`.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "bank/bank.h"
#include "bank/usage_stats.h"

namespace kvtune {

struct BankStats {
  std::string name;
  int64_t size = 0;
  int64_t key_dim = 0;
  int64_t value_dim = 0;
  bool trainable = false;
  double score_scale = 0;
  std::string index_factory;
  // Key norms (unit by invariant: a drift here means a damaged bank).
  double key_norm_min = 0, key_norm_max = 0, key_norm_mean = 0;
  // Values: element statistics and row norms.
  double value_mean = 0, value_std = 0, value_min = 0, value_max = 0, value_norm_mean = 0;
  // Usage: total retrievals, fraction of slots used, Gini, KL to uniform, top-1% share.
  UsageStats usage;
  int64_t origin_sources = 0;  // merged banks: the banks their slots came from
  int64_t bytes = 0;           // keys + values + ids + usage in memory
};

BankStats compute_bank_stats(const Bank& bank);
nlohmann::json to_json(const BankStats& stats);
std::string to_text(const BankStats& stats);

}  // namespace kvtune

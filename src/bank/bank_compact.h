// Fewer slots, chosen by usage or by leverage score: what `kvtune bank compact` runs
// (docs/banks.md).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "bank/bank.h"

namespace kvtune {

struct CompactOptions {
  std::string by = "usage";  // "usage" or "leverage"
  // Exactly one of the two rules:
  double keep_fraction = 0;  // (0, 1]: keep round(fraction * N) slots (at least 1), the top ones
  double eps = 0;            // (0, 1]: keep slots whose usage share / leverage score is >= eps
  bool one_pass = false;     // leverage with eps: the streaming universal set (same result)
};

// Refuses a bad combination with a message naming the options.
void validate_compact_options(const CompactOptions& options);

struct CompactReport {
  std::string by, rule;  // rule: "keep" or "eps"
  double threshold = 0;  // the fraction or eps given
  int64_t slots_before = 0, slots_after = 0, dropped = 0;
  int64_t usage_total = 0, usage_dropped = 0;
  double usage_share_dropped = 0;  // usage_dropped / usage_total (0 when nothing was counted)
  // Leverage only: rank(K) (= the sum of all scores), the score mass dropped and the smallest
  // score kept; one pass: the candidate limit 2d/eps, the most candidates held, prunes made.
  int64_t rank = 0;
  double leverage_dropped = 0, min_kept_score = 0;
  int64_t candidate_limit = 0, peak_candidates = 0, prunes = 0;
};
nlohmann::json to_json(const CompactReport& report);

// The kept slots in their original order, ids, usage and slot origins unchanged; meta as the
// input's, its provenance recording the compaction. Rules:
// - by usage, keep: the most used slots, ties to the smaller slot id;
// - by usage, eps: slots with usage_j / total >= eps (an error when no usage was counted);
// - by leverage, keep: the highest leverage scores, ties to the smaller slot id;
// - by leverage, eps: the universal set {j : tau_j >= eps} (docs/banks.md, Leverage scores), two
// passes, or
//   one streaming pass with one_pass.
// Keeping no slot is an error (lower eps).
Bank compact_bank(const Bank& bank, const CompactOptions& options, CompactReport* report = nullptr);

}  // namespace kvtune

#include "bank/bank_compact.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bank/leverage.h"
#include "common/check.h"
#include "common/utf8.h"

namespace kvtune {

namespace {

// The `count` best rows by `score` (higher first), ties to the smaller slot id; ascending rows.
torch::Tensor top_rows(const torch::Tensor& score, const torch::Tensor& slot_ids, int64_t count) {
  const int64_t n = score.size(0);
  const auto s = score.to(torch::kFloat64).contiguous();
  const auto ids = slot_ids.contiguous();
  const double* sp = s.data_ptr<double>();
  const int64_t* ip = ids.data_ptr<int64_t>();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return sp[a] != sp[b] ? sp[a] > sp[b] : ip[a] < ip[b]; });
  order.resize(static_cast<size_t>(count));
  std::sort(order.begin(), order.end());
  return torch::tensor(order, torch::kInt64);
}

}  // namespace

void validate_compact_options(const CompactOptions& o) {
  KVT_CHECK(o.by == "usage" || o.by == "leverage", "compact: unknown criterion '", o.by,
            "': use --by usage or --by leverage");
  const bool keep = o.keep_fraction != 0, eps = o.eps != 0;
  KVT_CHECK(keep != eps, "compact: give exactly one of --keep FRACTION and --eps E");
  KVT_CHECK(
      !keep || (std::isfinite(o.keep_fraction) && o.keep_fraction > 0 && o.keep_fraction <= 1),
      "compact: --keep is ", o.keep_fraction, ", expected a fraction in (0, 1]");
  KVT_CHECK(!eps || (std::isfinite(o.eps) && o.eps > 0 && o.eps <= 1), "compact: --eps is ", o.eps,
            ", expected a threshold in (0, 1]");
  KVT_CHECK(!o.one_pass || (o.by == "leverage" && eps),
            "compact: --one-pass is the streaming leverage universal set: use it with "
            "--by leverage --eps E");
}

nlohmann::json to_json(const CompactReport& r) {
  nlohmann::json j = {{"by", r.by},
                      {"rule", r.rule},
                      {"threshold", r.threshold},
                      {"slots_before", r.slots_before},
                      {"slots_after", r.slots_after},
                      {"dropped", r.dropped},
                      {"usage_total", r.usage_total},
                      {"usage_dropped", r.usage_dropped},
                      {"usage_share_dropped", r.usage_share_dropped}};
  if (r.by == "leverage") {
    j["leverage"] = {
        {"rank", r.rank}, {"dropped", r.leverage_dropped}, {"min_kept_score", r.min_kept_score}};
    if (r.candidate_limit > 0) {
      j["one_pass"] = {{"candidate_limit", r.candidate_limit},
                       {"peak_candidates", r.peak_candidates},
                       {"prunes", r.prunes}};
    }
  }
  return j;
}

Bank compact_bank(const Bank& bank, const CompactOptions& o, CompactReport* report) {
  validate_compact_options(o);
  torch::NoGradGuard no_grad;
  const int64_t n = bank.size();
  const std::string where = "compact bank '" + bank.meta.name + "'";
  KVT_CHECK(n > 0, where, ": the bank has no slot");
  CompactReport r;
  r.by = o.by;
  r.rule = o.keep_fraction != 0 ? "keep" : "eps";
  r.threshold = o.keep_fraction != 0 ? o.keep_fraction : o.eps;
  r.slots_before = n;
  r.usage_total = bank.usage.sum().item<int64_t>();
  const int64_t keep_count =
      std::clamp<int64_t>(std::llround(o.keep_fraction * static_cast<double>(n)), 1, n);

  torch::Tensor rows, scores;
  if (o.by == "usage") {
    if (r.rule == "keep") {
      rows = top_rows(bank.usage, bank.slot_ids, keep_count);
    } else {
      KVT_CHECK(r.usage_total > 0, where,
                ": no retrieval was counted (usage is 0 everywhere), so there are no usage "
                "shares to threshold: count usage first (`kvtune bank export --count-usage`) or "
                "use --by leverage");
      const auto share = bank.usage.to(torch::kFloat64) / static_cast<double>(r.usage_total);
      rows = share.ge(o.eps).nonzero().flatten();
    }
  } else {
    const auto inverse = gram_pseudo_inverse(gram_matrix(bank.keys));
    scores = leverage_scores(bank.keys, inverse.pinv);
    r.rank = inverse.rank;
    if (r.rule == "keep") {
      rows = top_rows(scores, bank.slot_ids, keep_count);
    } else if (!o.one_pass) {
      rows = scores.ge(o.eps).nonzero().flatten();
    } else {
      StreamingUniversalSet stream(bank.meta.key_dim, o.eps);
      // Chunks as gram_matrix sums them: the same M, so the same set as two passes.
      for (int64_t start = 0; start < n; start += kLeverageChunkRows) {
        stream.add(bank.keys.slice(0, start, std::min(n, start + kLeverageChunkRows)));
      }
      rows = stream.finish();
      r.candidate_limit = stream.candidate_limit();
      r.peak_candidates = stream.peak_candidates();
      r.prunes = stream.prunes();
    }
  }
  KVT_CHECK(rows.numel() > 0, where, ": no slot reaches ", o.by, " threshold eps = ", o.eps,
            ": lower --eps");

  Bank out = select_rows(bank, rows);
  r.slots_after = out.size();
  r.dropped = n - r.slots_after;
  r.usage_dropped = r.usage_total - out.usage.sum().item<int64_t>();
  r.usage_share_dropped =
      r.usage_total > 0 ? static_cast<double>(r.usage_dropped) / r.usage_total : 0.0;
  if (scores.defined()) {
    const auto kept = scores.index_select(0, rows);
    r.leverage_dropped = scores.sum().item<double>() - kept.sum().item<double>();
    r.min_kept_score = kept.min().item<double>();
  }
  nlohmann::json previous = bank.meta.provenance;
  // Kept as text unless it parses (accept() passes numbers that parse() refuses, e.g. 1e999).
  const auto parsed =
      nlohmann::json::parse(bank.meta.provenance, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded()) previous = parsed;
  out.meta.provenance = dump_json(nlohmann::json{{"compacted_by", "kvtune bank compact"},
                                                 {"by", r.by},
                                                 {r.rule, r.threshold},
                                                 {"one_pass", o.one_pass},
                                                 {"slots_before", n},
                                                 {"slots_after", r.slots_after},
                                                 {"from", previous}});
  if (report) *report = r;
  return out;
}

}  // namespace kvtune

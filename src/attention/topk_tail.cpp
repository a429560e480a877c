#include "attention/topk_tail.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "common/check.h"

namespace kvtune {

TopkTailSample topk_tail_sample(const int64_t* top_ids, const double* top_scores, int64_t k,
                                int64_t n, int64_t l, const ScoreFn& score, SamplerRng& rng) {
  KVT_CHECK(l >= 0, "the number of tail samples must be >= 0, got ", l);
  TopkTailSample out;
  std::vector<int64_t> s_ids;
  for (int64_t j = 0; j < k; ++j) {
    if (top_ids[j] < 0) continue;
    s_ids.push_back(top_ids[j]);
    out.ids.push_back(top_ids[j]);
    out.scores.push_back(top_scores[j]);
    out.weights.push_back(1.0);
  }
  const TailIds tail(std::move(s_ids), n);
  const int64_t tail_n = tail.size();
  out.tail_size = tail_n;
  if (tail_n == 0 || l == 0) return out;

  std::vector<int64_t> picked;
  if (l >= tail_n) {
    for (int64_t t = 0; t < tail_n; ++t) picked.push_back(tail(t));
  } else {
    // Floyd's algorithm: l distinct positions, every subset equally likely; kept in insertion
    // order so the sums below do not depend on a hash table's iteration order.
    std::unordered_set<int64_t> seen;
    seen.reserve(static_cast<size_t>(2 * l));
    for (int64_t j = tail_n - l; j < tail_n; ++j) {
      int64_t t = uniform_index(rng, j + 1);
      if (!seen.insert(t).second) {
        t = j;
        seen.insert(t);
      }
      picked.push_back(tail(t));
    }
  }
  const double w = static_cast<double>(tail_n) / static_cast<double>(picked.size());
  const size_t first = out.ids.size();
  out.ids.insert(out.ids.end(), picked.begin(), picked.end());
  out.scores.resize(out.ids.size());
  out.weights.resize(out.ids.size(), w);
  score(picked.data(), static_cast<int64_t>(picked.size()), out.scores.data() + first);
  return out;
}

double log_partition(const TopkTailSample& sample) {
  KVT_CHECK(!sample.ids.empty(), "log_partition: empty sample");
  const double shift = *std::max_element(sample.scores.begin(), sample.scores.end());
  double z = 0;
  for (size_t j = 0; j < sample.ids.size(); ++j)
    z += sample.weights[j] * std::exp(sample.scores[j] - shift);
  return shift + std::log(z);
}

}  // namespace kvtune

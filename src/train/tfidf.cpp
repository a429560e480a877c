#include "train/tfidf.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "common/check.h"

namespace kvtune {

torch::Tensor tfidf_scores(const torch::Tensor& counts, const torch::Tensor& df,
                           int64_t background_batches) {
  KVT_CHECK(counts.dim() == 1 && df.dim() == 1 && counts.size(0) == df.size(0),
            "tfidf: counts and df must be [N] alike, got ", counts.sizes(), " and ", df.sizes());
  KVT_CHECK(background_batches >= 0, "tfidf: background batches must be >= 0");
  const auto c = counts.to(torch::kFloat64);
  const double total = c.sum().item<double>();
  if (total <= 0) return torch::zeros_like(c);
  const auto idf = torch::log(double(background_batches + 1) / (df.to(torch::kFloat64) + 1.0));
  return (c / total) * idf;
}

torch::Tensor top_t_slots(const torch::Tensor& counts, const torch::Tensor& df,
                          int64_t background_batches, int64_t t) {
  KVT_CHECK(t >= 0, "tfidf: t must be >= 0, got ", t);
  const auto score = tfidf_scores(counts, df, background_batches).contiguous();
  const auto c = counts.contiguous();
  const int64_t n = score.size(0);
  const double* s = score.data_ptr<double>();
  const int64_t* cp = c.data_ptr<int64_t>();
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i)
    if (cp[i] > 0) rows.push_back(i);
  const auto keep = std::min<int64_t>(t, static_cast<int64_t>(rows.size()));
  // Largest score first; equal scores: the smaller slot (a rule that does not depend on sort
  // stability or thread count).
  std::partial_sort(rows.begin(), rows.begin() + keep, rows.end(),
                    [&](int64_t a, int64_t b) { return s[a] != s[b] ? s[a] > s[b] : a < b; });
  rows.resize(keep);
  std::sort(rows.begin(), rows.end());
  return torch::tensor(rows, torch::kInt64);
}

}  // namespace kvtune

#include "attention/impl/sampled_rows.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <utility>
#include <vector>

#include "attention/retrieval.h"
#include "common/check.h"

namespace kvtune::impl {

SampledTop sampled_top(const std::string& name, const torch::Tensor& q_unit,
                       const std::vector<BankView>& banks, const KnnAttentionOptions& options,
                       const BankRows& rows) {
  KVT_CHECK(!needs_gradient(q_unit, banks), "estimator '", name,
            "' has no autograd of its own: call it through knn_attention, which attaches the "
            "backward options.backward names (exact, sampled or dense)");
  const auto q = q_unit.detach().contiguous();
  const int64_t R = q.size(0), k = options.k;

  const auto cand = search_candidates(q, banks, k);
  const int64_t C = cand.size(1);
  SampledTop top;
  // The candidates scored once, by the score routine the sampler uses for the tail, and the
  // best k of them kept by those scores (ties to the smaller id; invalid ids dropped).
  top.q = q.to(torch::kFloat64).contiguous();
  const double* qp = top.q.data_ptr<double>();
  const auto cand_scores = torch::empty({R, C}, torch::kFloat64);
  rows.score_rows(qp, R, cand.data_ptr<int64_t>(), C, options.scale,
                  cand_scores.data_ptr<double>());
  top.ids = torch::empty({R, k}, torch::kInt64);
  top.rescored = torch::empty({R, k}, torch::kFloat64);
  const int64_t* cp = cand.data_ptr<int64_t>();
  const double* csp = cand_scores.data_ptr<double>();
  int64_t* ip = top.ids.data_ptr<int64_t>();
  double* sp = top.rescored.data_ptr<double>();
  const int64_t total = rows.total();
#pragma omp parallel
  {
    std::vector<std::pair<double, int64_t>> scored;
    scored.reserve(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      scored.clear();
      for (int64_t c = 0; c < C; ++c) {
        const int64_t id = cp[r * C + c];
        if (id >= 0 && id < total) scored.emplace_back(csp[r * C + c], id);
      }
      const int64_t kept = std::min<int64_t>(k, static_cast<int64_t>(scored.size()));
      std::partial_sort(
          scored.begin(), scored.begin() + kept, scored.end(),
          [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
          });
      for (int64_t j = 0; j < k; ++j) {
        const bool have = j < kept;
        ip[r * k + j] = have ? scored[j].second : -1;
        sp[r * k + j] = have ? scored[j].first : -std::numeric_limits<double>::infinity();
      }
    }
  }
  top.scores = top.rescored.to(q.scalar_type());
  return top;
}

KnnAttentionResult sampled_forward(const std::string& name, const torch::Tensor& q_unit,
                                   const std::vector<BankView>& banks,
                                   const KnnAttentionOptions& options, const SampledRowFn& fn) {
  const BankRows rows(banks);
  const SampledTop top = sampled_top(name, q_unit, banks, options, rows);
  const int64_t R = top.q.size(0), dk = top.q.size(1), k = options.k, dv = rows.dv();
  auto out = torch::zeros({R, dv}, torch::kFloat64);
  const double* qp = top.q.data_ptr<double>();
  const int64_t* ids = top.ids.data_ptr<int64_t>();
  const double* sp = top.rescored.data_ptr<double>();
  double* op = out.data_ptr<double>();
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < R; ++r) {
    try {
      const ScoreFn score = rows.scorer(qp + r * dk, options.scale);
      SamplerRng rng(stream_seed(options.seed, static_cast<uint64_t>(r)));
      fn(rows, {qp + r * dk, ids + r * k, sp + r * k, k, &rng, op + r * dv, &score});
    } catch (...) {
#pragma omp critical(kvtune_sampled_forward)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return {out.to(top.scores.scalar_type()), top.ids, top.scores};
}

}  // namespace kvtune::impl

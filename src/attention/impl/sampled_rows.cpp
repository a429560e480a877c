#include "attention/impl/sampled_rows.h"

#include <exception>

#include "attention/retrieval.h"
#include "common/check.h"
#include "kernels/knn_attention_cpu.h"

namespace kvtune::impl {

KnnAttentionResult sampled_forward(const std::string& name, const torch::Tensor& q_unit,
                                   const std::vector<BankView>& banks,
                                   const KnnAttentionOptions& options, const SampledRowFn& fn) {
  KVT_CHECK(!needs_gradient(q_unit, banks), "estimator '", name,
            "' has no autograd of its own: call it through knn_attention, which attaches the "
            "backward options.backward names (exact, sampled or dense)");
  const auto q = q_unit.detach().contiguous();
  const int64_t R = q.size(0), dk = q.size(1), k = options.k;
  const BankRows rows(banks);
  const int64_t dv = rows.dv();

  // The merged top-k exactly as "topk" selects it (the kernel's output itself is not used).
  const auto cand = search_candidates(q, banks, k);
  auto top_ids = torch::empty({R, k}, torch::kInt64);
  auto top_scores = torch::empty({R, k}, q.options());
  {
    auto probs = torch::empty({R, k}, q.options());
    auto unused = torch::empty({R, dv}, q.options());
    std::vector<kernels::BankPointers<double>> p64;
    std::vector<kernels::BankPointers<float>> p32;
    int64_t offset = 0;
    for (const auto& b : banks) {
      if (q.scalar_type() == torch::kFloat64)
        p64.push_back({b.keys.data_ptr<double>(), b.values.data_ptr<double>(), b.size(), offset});
      else
        p32.push_back({b.keys.data_ptr<float>(), b.values.data_ptr<float>(), b.size(), offset});
      offset += b.size();
    }
    if (q.scalar_type() == torch::kFloat64) {
      kernels::topk_attention_forward<double>(
          q.data_ptr<double>(), R, dk, dv, p64.data(), static_cast<int>(p64.size()),
          cand.data_ptr<int64_t>(), cand.size(1), k, options.scale, top_ids.data_ptr<int64_t>(),
          top_scores.data_ptr<double>(), probs.data_ptr<double>(), unused.data_ptr<double>());
    } else {
      kernels::topk_attention_forward<float>(
          q.data_ptr<float>(), R, dk, dv, p32.data(), static_cast<int>(p32.size()),
          cand.data_ptr<int64_t>(), cand.size(1), k, static_cast<float>(options.scale),
          top_ids.data_ptr<int64_t>(), top_scores.data_ptr<float>(), probs.data_ptr<float>(),
          unused.data_ptr<float>());
    }
  }

  const auto qd = q.to(torch::kFloat64).contiguous();
  auto out = torch::zeros({R, dv}, torch::kFloat64);
  const double* qp = qd.data_ptr<double>();
  const int64_t* ids = top_ids.data_ptr<int64_t>();
  double* op = out.data_ptr<double>();
  std::exception_ptr error;
#pragma omp parallel
  {
    std::vector<double> scores(static_cast<size_t>(k));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < R; ++r) {
      try {
        // Re-score the top-k in double, as the tail keys are scored: every comparison of a
        // tail score with the top-k's minimum then uses the same arithmetic.
        for (int64_t j = 0; j < k; ++j) {
          scores[j] = rows.score(qp + r * dk, ids[r * k + j], options.scale);
        }
        SamplerRng rng(stream_seed(options.seed, static_cast<uint64_t>(r)));
        fn(rows, {qp + r * dk, ids + r * k, scores.data(), k, &rng, op + r * dv});
      } catch (...) {
#pragma omp critical(kvtune_sampled_forward)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return {out.to(q.scalar_type()), top_ids, top_scores};
}

}  // namespace kvtune::impl

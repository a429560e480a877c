#include "attention/impl/sampled_rows.h"

#include <exception>

#include <ATen/Dispatch.h>

#include "attention/retrieval.h"
#include "common/check.h"
#include "kernels/knn_attention_cpu.h"

namespace kvtune::impl {

SampledTop sampled_top(const std::string& name, const torch::Tensor& q_unit,
                       const std::vector<BankView>& banks, const KnnAttentionOptions& options,
                       const BankRows& rows) {
  KVT_CHECK(!needs_gradient(q_unit, banks), "estimator '", name,
            "' has no autograd of its own: call it through knn_attention, which attaches the "
            "backward options.backward names (exact, sampled or dense)");
  const auto q = q_unit.detach().contiguous();
  const int64_t R = q.size(0), dk = q.size(1), k = options.k;
  const int64_t dv = rows.dv();

  const auto cand = search_candidates(q, banks, k);
  SampledTop top;
  top.ids = torch::empty({R, k}, torch::kInt64);
  top.scores = torch::empty({R, k}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "sampled_forward_select", [&] {
    std::vector<kernels::BankPointers<scalar_t>> ptrs;
    int64_t offset = 0;
    for (const auto& b : banks) {
      ptrs.push_back(
          {b.keys.data_ptr<scalar_t>(), b.values.data_ptr<scalar_t>(), b.size(), offset});
      offset += b.size();
    }
    kernels::topk_attention_forward<scalar_t>(
        q.data_ptr<scalar_t>(), R, dk, dv, ptrs.data(), static_cast<int>(ptrs.size()),
        cand.data_ptr<int64_t>(), cand.size(1), k, static_cast<scalar_t>(options.scale),
        top.ids.data_ptr<int64_t>(), top.scores.data_ptr<scalar_t>(), nullptr, nullptr);
  });

  top.q = q.to(torch::kFloat64).contiguous();
  top.rescored = torch::empty({R, k}, torch::kFloat64);
  const double* qp = top.q.data_ptr<double>();
  const int64_t* ids = top.ids.data_ptr<int64_t>();
  rows.score_rows(qp, R, ids, k, options.scale, top.rescored.data_ptr<double>());
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

// "topk": softmax over the merged top-k of all banks, with the exact gradient of that truncated
// op (docs/sampled-attention.md, Backward choices). Key/value gradients are sparse: only retrieved
// rows.
#include <ATen/Dispatch.h>

#include "attention/impl/estimators.h"
#include "attention/impl/row_gradient.h"
#include "attention/retrieval.h"
#include "common/check.h"
#include "kernels/knn_attention_cpu.h"

namespace kvtune::impl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct TopkArgs {
  const std::vector<BankView>* banks;
  int64_t k;
  double scale;
  const torch::Tensor* candidates;  // [R, C] global ids to select from; null: search the banks
};

template <typename T>
std::vector<kernels::BankPointers<T>> bank_pointers(const std::vector<torch::Tensor>& tensors) {
  std::vector<kernels::BankPointers<T>> ptrs;
  int64_t offset = 0;
  for (size_t b = 0; b + 1 < tensors.size(); b += 2) {
    ptrs.push_back(
        {tensors[b].data_ptr<T>(), tensors[b + 1].data_ptr<T>(), tensors[b].size(0), offset});
    offset += tensors[b].size(0);
  }
  return ptrs;
}

struct TopkFunction : public torch::autograd::Function<TopkFunction> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor q_unit,
                               at::TensorList bank_tensors, const TopkArgs& args) {
    const int64_t R = q_unit.size(0), dk = q_unit.size(1);
    const int64_t dv = bank_tensors[1].size(1);
    const int64_t k = args.k;
    const auto cand = args.candidates != nullptr ? args.candidates->contiguous()
                                                 : search_candidates(q_unit, *args.banks, k);
    const auto q = q_unit.contiguous();
    std::vector<torch::Tensor> tensors(bank_tensors.begin(), bank_tensors.end());

    auto top_ids = torch::empty({R, k}, torch::kInt64);
    auto top_scores = torch::empty({R, k}, q.options());
    auto probs = torch::empty({R, k}, q.options());
    auto out = torch::empty({R, dv}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "topk_attention_forward", [&] {
      const auto ptrs = bank_pointers<scalar_t>(tensors);
      kernels::topk_attention_forward<scalar_t>(
          q.data_ptr<scalar_t>(), R, dk, dv, ptrs.data(), static_cast<int>(ptrs.size()),
          cand.data_ptr<int64_t>(), cand.size(1), k, static_cast<scalar_t>(args.scale),
          top_ids.data_ptr<int64_t>(), top_scores.data_ptr<scalar_t>(), probs.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>());
    });

    std::vector<int64_t> grad_mask;
    for (const auto& t : tensors) grad_mask.push_back(t.requires_grad() ? 1 : 0);
    std::vector<torch::Tensor> saved = {q, top_ids, probs, out};
    saved.insert(saved.end(), tensors.begin(), tensors.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["scale"] = args.scale;
    ctx->saved_data["grad_mask"] = grad_mask;
    ctx->mark_non_differentiable({top_ids, top_scores});
    return {out, top_ids, top_scores};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& q = saved[0];
    const auto& top_ids = saved[1];
    const auto& probs = saved[2];
    const auto& out = saved[3];
    const std::vector<torch::Tensor> tensors(saved.begin() + 4, saved.end());
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto grad_mask = ctx->saved_data["grad_mask"].toIntVector();
    const int64_t R = q.size(0), dk = q.size(1), dv = out.size(1), k = top_ids.size(1);

    variable_list grads(1 + tensors.size() + 1);  // q, bank tensors, args (none)
    torch::Tensor dout =
        grad_outputs[0].defined() ? grad_outputs[0].contiguous() : torch::zeros_like(out);
    auto dq = torch::empty_like(q);
    auto g = torch::empty({R, k}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "topk_attention_backward", [&] {
      const auto ptrs = bank_pointers<scalar_t>(tensors);
      kernels::topk_attention_backward_query<scalar_t>(
          dout.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), top_ids.data_ptr<int64_t>(),
          probs.data_ptr<scalar_t>(), R, dk, dv, k, ptrs.data(), static_cast<int>(ptrs.size()),
          static_cast<scalar_t>(scale), g.data_ptr<scalar_t>(), dq.data_ptr<scalar_t>());

      // Each trainable bank: group the retrieved (row, slot) pairs by bank row, then sum
      // per row with no races and in a fixed order (deterministic).
      const auto flat_ids = top_ids.reshape({-1});
      int64_t offset = 0;
      for (size_t b = 0; b < ptrs.size(); ++b) {
        const bool want_keys = grad_mask[2 * b] != 0, want_values = grad_mask[2 * b + 1] != 0;
        const int64_t n = ptrs[b].rows;
        if (want_keys || want_values) {
          const auto in_bank =
              torch::nonzero((flat_ids >= offset) & (flat_ids < offset + n)).reshape({-1});
          const auto local = flat_ids.index_select(0, in_bank) - offset;
          const auto sorted = torch::sort(local, /*stable=*/true, /*dim=*/0, /*descending=*/false);
          const auto& sorted_rows = std::get<0>(sorted);
          const auto pair_index = in_bank.index_select(0, std::get<1>(sorted)).contiguous();
          const auto uniq = torch::unique_consecutive(sorted_rows, /*return_inverse=*/false,
                                                      /*return_counts=*/true);
          const auto& rows = std::get<0>(uniq);
          const auto segments =
              torch::cat({torch::zeros({1}, torch::kInt64), std::get<2>(uniq).cumsum(0)})
                  .contiguous();
          const int64_t U = rows.size(0);
          auto dkeys = want_keys ? torch::empty({U, dk}, q.options()) : torch::Tensor();
          auto dvalues = want_values ? torch::empty({U, dv}, q.options()) : torch::Tensor();
          kernels::topk_attention_backward_rows<scalar_t>(
              q.data_ptr<scalar_t>(), dout.data_ptr<scalar_t>(), probs.data_ptr<scalar_t>(),
              g.data_ptr<scalar_t>(), pair_index.data_ptr<int64_t>(), segments.data_ptr<int64_t>(),
              U, k, dk, dv, static_cast<scalar_t>(scale),
              want_keys ? dkeys.data_ptr<scalar_t>() : nullptr,
              want_values ? dvalues.data_ptr<scalar_t>() : nullptr);
          if (want_keys) grads[1 + 2 * b] = row_gradient(rows, dkeys, tensors[2 * b]);
          if (want_values) grads[2 + 2 * b] = row_gradient(rows, dvalues, tensors[2 * b + 1]);
        }
        offset += n;
      }
    });
    grads[0] = dq;
    return grads;
  }
};

KnnAttentionResult topk_attention(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                  const KnnAttentionOptions& options,
                                  const torch::Tensor* candidates) {
  std::vector<torch::Tensor> tensors;
  for (const auto& b : banks) {
    tensors.push_back(b.keys);
    tensors.push_back(b.values);
  }
  const TopkArgs args{&banks, options.k, options.scale, candidates};
  auto outs = TopkFunction::apply(q_unit, at::TensorList(tensors), args);
  return {outs[0], outs[1], outs[2]};
}

class TopkEstimator : public Estimator {
 public:
  std::string name() const override { return "topk"; }

  KnnAttentionResult forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                             const KnnAttentionOptions& options) const override {
    return topk_attention(q_unit, banks, options, nullptr);
  }
};

}  // namespace

KnnAttentionResult topk_from_candidates(const torch::Tensor& q_unit,
                                        const std::vector<BankView>& banks,
                                        const KnnAttentionOptions& options,
                                        const torch::Tensor& candidates) {
  KVT_CHECK(candidates.dim() == 2 && candidates.size(0) == q_unit.size(0) &&
                candidates.scalar_type() == torch::kInt64,
            "topk: candidates must be int64 [", q_unit.size(0), ", C], got ", candidates.sizes());
  return topk_attention(q_unit, banks, options, &candidates);
}

std::unique_ptr<Estimator> make_topk_estimator() {
  return std::make_unique<TopkEstimator>();
}

}  // namespace kvtune::impl

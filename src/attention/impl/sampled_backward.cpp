#include "attention/impl/sampled_backward.h"

#include <algorithm>
#include <exception>

#include "attention/impl/bank_rows.h"
#include "attention/impl/gumbel_block.h"
#include "attention/impl/row_gradient.h"
#include "attention/lazy_gumbel.h"
#include "common/check.h"

namespace kvtune::impl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One query row's distinct sampled ids with their weights: w = count / s and w * g.
struct RowSamples {
  std::vector<int64_t> ids;
  std::vector<double> w, wg;
};

struct SampledBackwardFunction : public torch::autograd::Function<SampledBackwardFunction> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor q_unit,
                               at::TensorList bank_tensors, torch::Tensor output,
                               torch::Tensor top_ids, const KnnAttentionOptions& options) {
    std::vector<int64_t> grad_mask;
    for (const auto& t : bank_tensors) grad_mask.push_back(t.requires_grad() ? 1 : 0);
    std::vector<torch::Tensor> saved = {q_unit, output, top_ids};
    saved.insert(saved.end(), bank_tensors.begin(), bank_tensors.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["scale"] = options.scale;
    ctx->saved_data["samples"] = options.backward_samples;
    ctx->saved_data["seed"] = static_cast<int64_t>(options.seed);
    ctx->saved_data["grad_mask"] = grad_mask;
    ctx->saved_data["q_grad"] = q_unit.requires_grad();
    // A new tensor (the op's output must not alias an input).
    return {output.clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& q_in = saved[0];
    const auto& out_in = saved[1];
    const auto& top_ids = saved[2];
    const std::vector<torch::Tensor> tensors(saved.begin() + 3, saved.end());
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t s = ctx->saved_data["samples"].toInt();
    const uint64_t seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    const auto grad_mask = ctx->saved_data["grad_mask"].toIntVector();
    const bool q_grad = ctx->saved_data["q_grad"].toBool();

    std::vector<BankView> views;
    for (size_t b = 0; b + 1 < tensors.size(); b += 2) {
      views.push_back({tensors[b].detach(), tensors[b + 1].detach(), nullptr, ""});
    }
    const BankRows rows(views);
    const int64_t R = q_in.size(0), dk = rows.dk(), dv = rows.dv(), k = top_ids.size(1);
    const auto q = q_in.detach().to(torch::kFloat64).contiguous();
    const auto out = out_in.detach().to(torch::kFloat64).contiguous();
    const auto dout = (grad_outputs[0].defined() ? grad_outputs[0] : torch::zeros_like(out_in))
                          .to(torch::kFloat64)
                          .contiguous();
    const auto ids = top_ids.contiguous();
    auto dq = torch::zeros({R, dk}, torch::kFloat64);

    const double* qp = q.data_ptr<double>();
    const double* op = out.data_ptr<double>();
    const double* gp = dout.data_ptr<double>();
    const int64_t* ip = ids.data_ptr<int64_t>();
    double* dqp = dq.data_ptr<double>();
    const uint64_t family = stream_seed(seed, kBackwardStream);
    // Every row's s draws at once (the blocks of rows share their tail keys' gathers), from the
    // forward's top-k ids re-scored with the sampler's own score routine.
    auto top_scores = torch::empty({R, k}, torch::kFloat64);
    double* tsp = top_scores.data_ptr<double>();
    rows.score_rows(qp, R, ip, k, scale, tsp);
    std::vector<int64_t> all_drawn(static_cast<size_t>(R * s));
    lazy_gumbel_draws(rows, qp, ip, tsp, R, k, s, scale, family, all_drawn.data(), nullptr);
    std::vector<RowSamples> per_row(static_cast<size_t>(R));
    std::exception_ptr error;
#pragma omp parallel
    {
      std::vector<int64_t> drawn(static_cast<size_t>(s));
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < R; ++r) {
        try {
          const double* dor = gp + r * dv;
          double D = 0;
          for (int64_t j = 0; j < dv; ++j) D += dor[j] * op[r * dv + j];
          std::copy(all_drawn.begin() + r * s, all_drawn.begin() + (r + 1) * s, drawn.begin());
          std::sort(drawn.begin(), drawn.end());
          RowSamples& rs = per_row[r];
          for (int64_t i = 0; i < s;) {
            int64_t e = i;
            while (e < s && drawn[e] == drawn[i]) ++e;
            const int64_t id = drawn[i];
            const double w = static_cast<double>(e - i) / static_cast<double>(s);
            const double g = scale * (rows.value_dot(id, dor) - D);
            if (q_grad) rows.add_key(id, w * g, dqp + r * dk);
            rs.ids.push_back(id);
            rs.w.push_back(w);
            rs.wg.push_back(w * g);
            i = e;
          }
        } catch (...) {
#pragma omp critical(kvtune_sampled_backward)
          if (!error) error = std::current_exception();
        }
      }
    }
    if (error) std::rethrow_exception(error);

    variable_list grads(1 + tensors.size() + 3);  // q_unit, bank tensors, output, top_ids, options
    if (q_grad) grads[0] = dq.to(q_in.scalar_type());

    bool any_bank = false;
    for (const auto m : grad_mask) any_bank = any_bank || m != 0;
    if (!any_bank) return grads;

    // All (row, id) pairs, rows in order: deterministic whatever the thread count.
    int64_t P = 0;
    for (const auto& rs : per_row) P += static_cast<int64_t>(rs.ids.size());
    auto pair_ids = torch::empty({P}, torch::kInt64);
    auto pair_rows = torch::empty({P}, torch::kInt64);
    auto pair_w = torch::empty({P}, torch::kFloat64);
    auto pair_wg = torch::empty({P}, torch::kFloat64);
    {
      int64_t* pi = pair_ids.data_ptr<int64_t>();
      int64_t* pr = pair_rows.data_ptr<int64_t>();
      double* pw = pair_w.data_ptr<double>();
      double* pwg = pair_wg.data_ptr<double>();
      int64_t at = 0;
      for (int64_t r = 0; r < R; ++r) {
        const auto& rs = per_row[r];
        for (size_t i = 0; i < rs.ids.size(); ++i, ++at) {
          pi[at] = rs.ids[i];
          pr[at] = r;
          pw[at] = rs.w[i];
          pwg[at] = rs.wg[i];
        }
      }
    }
    const auto offsets = bank_offsets(views);
    for (size_t b = 0; b < views.size(); ++b) {
      const bool want_keys = grad_mask[2 * b] != 0, want_values = grad_mask[2 * b + 1] != 0;
      if (!want_keys && !want_values) continue;
      const int64_t n = views[b].size();
      const auto in_bank =
          torch::nonzero((pair_ids >= offsets[b]) & (pair_ids < offsets[b] + n)).reshape({-1});
      const auto sorted =
          torch::sort(pair_ids.index_select(0, in_bank) - offsets[b], /*stable=*/true, 0, false);
      const auto order = in_bank.index_select(0, std::get<1>(sorted));
      const auto uniq = torch::unique_consecutive(std::get<0>(sorted), /*return_inverse=*/true);
      const auto& bank_rows = std::get<0>(uniq);
      const auto& inverse = std::get<1>(uniq);
      const auto src_rows = pair_rows.index_select(0, order);
      const int64_t U = bank_rows.size(0);
      const auto dtype = tensors[2 * b].scalar_type();
      if (want_values) {
        const auto contrib =
            pair_w.index_select(0, order).unsqueeze(1) * dout.index_select(0, src_rows);
        auto dvalues = torch::zeros({U, dv}, torch::kFloat64).index_add_(0, inverse, contrib);
        grads[2 + 2 * b] = row_gradient(bank_rows, dvalues.to(dtype), tensors[2 * b + 1]);
      }
      if (want_keys) {
        const auto contrib =
            pair_wg.index_select(0, order).unsqueeze(1) * q.index_select(0, src_rows);
        auto dkeys = torch::zeros({U, dk}, torch::kFloat64).index_add_(0, inverse, contrib);
        grads[1 + 2 * b] = row_gradient(bank_rows, dkeys.to(dtype), tensors[2 * b]);
      }
    }
    return grads;
  }
};

}  // namespace

torch::Tensor with_sampled_backward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                    const KnnAttentionOptions& options, const torch::Tensor& output,
                                    const torch::Tensor& top_ids) {
  KVT_CHECK(options.backward_samples > 0, "backward 'sampled': backward_samples must be positive, ",
            "got ", options.backward_samples);
  std::vector<torch::Tensor> tensors;
  for (const auto& b : banks) {
    tensors.push_back(b.keys);
    tensors.push_back(b.values);
  }
  return SampledBackwardFunction::apply(q_unit, at::TensorList(tensors), output.detach(),
                                        top_ids.detach(), options)[0];
}

}  // namespace kvtune::impl

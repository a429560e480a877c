#include "attention/knn_attention.h"

#include <algorithm>
#include <cmath>

#include "attention/estimator.h"
#include "attention/impl/estimators.h"
#include "attention/impl/sampled_backward.h"
#include "common/check.h"
#ifdef KVTUNE_WITH_CUDA
#include "attention/cuda/knn_attention_cuda.h"
#endif

namespace kvtune {

namespace {

// The backward an estimator's own autograd gives ("" for the forward-only sampled ones). "dense"
// has none here: without grad it runs blocked, with grad as plain torch ops, whose outputs differ
// in rounding; so its value always comes from the blocked form, with the autograd form's
// gradient attached, like every other pair.
std::string own_backward(const std::string& estimator) {
  if (estimator == "topk") return "exact";
  return "";
}

// The queries as unit rows [R, d_k], and the scale resolved into `resolved` (0: sqrt(d_k)). With
// a learned scale c, resolved.scale = c and the rows carry dL/dc.
torch::Tensor unit_queries(const torch::Tensor& queries, const torch::Tensor& learned_scale,
                           KnnAttentionOptions& resolved) {
  if (resolved.scale == 0.0) resolved.scale = std::sqrt(static_cast<double>(queries.size(-1)));
  auto q_unit = torch::nn::functional::normalize(
      queries.reshape({-1, queries.size(-1)}),
      torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  if (learned_scale.defined()) {
    KVT_CHECK(learned_scale.numel() == 1, "learned_scale must hold one value, got ",
              learned_scale.numel());
    const double c = learned_scale.detach().to(torch::kFloat64).item<double>();
    KVT_CHECK(std::isfinite(c) && c > 0, "learned_scale must be finite and > 0, got ", c);
    resolved.scale = c;
    // Exactly q_unit in value (x / x is 1 in IEEE arithmetic); carries dL/dc.
    q_unit = q_unit * (learned_scale.reshape({}).to(q_unit.scalar_type()) / c);
  }
  return q_unit;
}

}  // namespace

namespace impl {

KnnAttentionResult with_lead_dims(KnnAttentionResult r, const torch::Tensor& queries) {
  const auto lead = queries.sizes().slice(0, queries.dim() - 1).vec();
  auto shaped = [&](const torch::Tensor& t) {
    auto s = lead;
    s.push_back(t.size(-1));
    return t.reshape(s);
  };
  return {shaped(r.output), shaped(r.ids), shaped(r.scores)};
}

}  // namespace impl

bool needs_gradient(const torch::Tensor& queries, const std::vector<BankView>& banks) {
  if (!torch::GradMode::is_enabled()) return false;
  if (queries.requires_grad()) return true;
  for (const auto& b : banks)
    if (b.keys.requires_grad() || b.values.requires_grad()) return true;
  return false;
}

const std::vector<std::string>& attention_backward_names() {
  static const std::vector<std::string> names = {"exact", "sampled", "dense"};
  return names;
}

std::vector<int64_t> bank_offsets(const std::vector<BankView>& banks) {
  std::vector<int64_t> offsets;
  offsets.reserve(banks.size());
  int64_t total = 0;
  for (const auto& b : banks) {
    offsets.push_back(total);
    total += b.size();
  }
  return offsets;
}

void check_attention_inputs(const torch::Tensor& queries, const std::vector<BankView>& banks,
                            const KnnAttentionOptions& options) {
  KVT_CHECK(queries.defined() && queries.dim() >= 1, "queries must be a tensor [..., d_k]");
#ifdef KVTUNE_WITH_CUDA
  KVT_CHECK(!queries.is_cuda(),
            "queries are on CUDA but this check is for the CPU path (on CUDA, knn_attention "
            "runs estimator topk with backward exact: docs/gpu.md)");
#else
  KVT_CHECK(!queries.is_cuda(),
            "queries are on CUDA but kvtune was built without CUDA (cmake -DKVTUNE_CUDA=ON "
            "against a libtorch with CUDA builds the CUDA path, docs/gpu.md; move the tensors "
            "to the CPU otherwise)");
#endif
  const auto dtype = queries.scalar_type();
  KVT_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat64,
            "queries must be float32 or float64, got ", dtype);
  KVT_CHECK(!banks.empty(), "kNN attention needs at least one bank");
  KVT_CHECK(options.k > 0, "k must be positive, got ", options.k);
  const auto& backwards = attention_backward_names();
  KVT_CHECK(std::find(backwards.begin(), backwards.end(), options.backward) != backwards.end(),
            "unknown backward '", options.backward, "': choose one of exact, sampled, dense");
  KVT_CHECK(options.backward != "sampled" || options.backward_samples > 0,
            "backward 'sampled' needs backward_samples > 0, got ", options.backward_samples);
  KVT_CHECK(options.scale >= 0 && std::isfinite(options.scale),
            "scale must be finite and >= 0 (0 means sqrt(d_k)), got ", options.scale);
  const int64_t dk = queries.size(-1);
  const int64_t dv = banks[0].values.defined() ? banks[0].values.size(-1) : -1;
  for (size_t b = 0; b < banks.size(); ++b) {
    const auto& bank = banks[b];
    const std::string name =
        bank.name.empty() ? "bank " + std::to_string(b) : "bank '" + bank.name + "'";
    KVT_CHECK(bank.keys.defined() && bank.values.defined(), name, " has no keys or values");
    KVT_CHECK(bank.keys.dim() == 2 && bank.values.dim() == 2, name,
              ": keys and values must be 2-D [N, d]");
    KVT_CHECK(bank.keys.size(0) == bank.values.size(0), name, " has ", bank.keys.size(0),
              " keys but ", bank.values.size(0), " values");
    KVT_CHECK(bank.keys.size(0) > 0, name, " is empty");
    KVT_CHECK(bank.keys.size(1) == dk, name, " has key dim ", bank.keys.size(1),
              " but the queries have d_k = ", dk);
    KVT_CHECK(bank.values.size(1) == dv, name, " has value dim ", bank.values.size(1),
              " but bank 0 has ", dv, ": all banks of a layer share d_v");
    KVT_CHECK(bank.keys.scalar_type() == dtype && bank.values.scalar_type() == dtype, name, " is ",
              bank.keys.scalar_type(), " but the queries are ", dtype, " (convert one side)");
    KVT_CHECK(!bank.keys.is_cuda() && !bank.values.is_cuda(), name,
              " is on CUDA but this op runs on the CPU");
    KVT_CHECK(bank.keys.is_contiguous() && bank.values.is_contiguous(), name,
              ": keys and values must be contiguous");
    if (bank.index != nullptr) {
      KVT_CHECK(bank.index->dim() == dk && bank.index->size() == bank.size(), name,
                ": its index has ", bank.index->size(), " vectors of dim ", bank.index->dim(),
                " but the bank has ", bank.size(), " of dim ", dk, " (rebuild the index)");
    }
  }
}

KnnAttentionResult knn_attention(const torch::Tensor& queries, const std::vector<BankView>& banks,
                                 const KnnAttentionOptions& options,
                                 const torch::Tensor& learned_scale) {
#ifdef KVTUNE_WITH_CUDA
  if (queries.defined() && queries.is_cuda()) {
    // The CUDA path checks its own inputs (float32 queries; float32 or bfloat16 banks).
    KVT_CHECK(queries.dim() >= 1, "queries must be a tensor [..., d_k]");
    KnnAttentionOptions resolved = options;
    const auto q_unit = unit_queries(queries, learned_scale, resolved);
    return impl::with_lead_dims(cuda::knn_attention_cuda(q_unit, banks, resolved), queries);
  }
#endif
  check_attention_inputs(queries, banks, options);
  const auto estimator = make_estimator(options.estimator);
  KnnAttentionOptions resolved = options;
  const auto q_unit = unit_queries(queries, learned_scale, resolved);
  KnnAttentionResult r;
  if (!needs_gradient(q_unit, banks) || own_backward(resolved.estimator) == resolved.backward) {
    r = estimator->forward(q_unit, banks, resolved);
  } else {
    // The forward estimate without autograd, then the chosen gradient attached to it: the
    // output's value is the estimator's, its gradient the backward's.
    {
      torch::NoGradGuard no_grad;
      r = estimator->forward(q_unit.detach(), banks, resolved);
    }
    if (resolved.backward == "sampled") {
      r.output = impl::with_sampled_backward(q_unit, banks, resolved, r.output, r.ids);
    } else {
      // "exact" or "dense": that op's own autograd, with zero value (g - g.detach() is 0 exactly).
      // "exact" selects from the forward's own retrieval (r.ids, the merged top-k of every
      // estimator): a step searches the index once.
      const auto g = resolved.backward == "exact"
                         ? impl::topk_from_candidates(q_unit, banks, resolved, r.ids)
                         : make_estimator("dense")->forward(q_unit, banks, resolved);
      r.output = r.output + (g.output - g.output.detach());
    }
  }
  return impl::with_lead_dims(std::move(r), queries);
}

}  // namespace kvtune

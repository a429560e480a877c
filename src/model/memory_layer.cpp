#include "model/memory_layer.h"

#include "common/check.h"

namespace kvtune {

MemoryLayerImpl::MemoryLayerImpl(MemoryLayerOptions options) : options_(std::move(options)) {
  KVT_CHECK(
      options_.d_model > 0 && options_.heads > 0 && options_.key_dim > 0 && options_.value_dim > 0,
      "memory layer: d_model, heads, key_dim and value_dim must be positive");
  query = register_module(
      "query", torch::nn::Linear(
                   torch::nn::LinearOptions(options_.d_model, options_.heads * options_.key_dim)
                       .bias(false)));
  output = register_module(
      "output", torch::nn::Linear(options_.heads * options_.value_dim, options_.d_model));
}

void MemoryLayerImpl::attach(std::shared_ptr<IndexedBank> bank) {
  KVT_CHECK(bank != nullptr, "memory layer: cannot attach a null bank");
  const auto& meta = bank->bank().meta;
  KVT_CHECK(meta.key_dim == options_.key_dim && meta.value_dim == options_.value_dim, "bank '",
            meta.name, "' has key_dim ", meta.key_dim, " and value_dim ", meta.value_dim,
            " but the memory layer expects ", options_.key_dim, " and ", options_.value_dim,
            ": use a bank made for this model");
  banks_.push_back(std::move(bank));
}

torch::Tensor MemoryLayerImpl::forward(const torch::Tensor& x) {
  KVT_CHECK(!banks_.empty(), "memory layer has no bank attached");
  KVT_CHECK(x.size(-1) == options_.d_model, "memory layer: input has last dim ", x.size(-1),
            ", expected d_model = ", options_.d_model);
  auto lead = x.sizes().slice(0, x.dim() - 1).vec();
  auto q_shape = lead;
  q_shape.push_back(options_.heads);
  q_shape.push_back(options_.key_dim);
  const auto q = query->forward(x).reshape(q_shape);
  if (capture_queries_) {
    const auto d = q.detach();
    last_queries_ = d / d.norm(2, -1, true).clamp_min(1e-12);
  }

  std::vector<BankView> views;
  views.reserve(banks_.size());
  for (const auto& b : banks_) views.push_back(b->view());
  auto result = knn_attention(q, views, options_.attention,
                              log_scale_.defined() ? log_scale_.exp() : torch::Tensor());
  last_ids_ = result.ids;

  if (options_.track_usage) {
    const auto offsets = bank_offsets(views);
    const auto ids = result.ids.reshape({-1});
    for (size_t b = 0; b < banks_.size(); ++b) {
      const auto in_bank = (ids >= offsets[b]) & (ids < offsets[b] + banks_[b]->size());
      banks_[b]->record_usage(ids.masked_select(in_bank) - offsets[b]);
    }
  }
  auto out_shape = lead;
  out_shape.push_back(options_.heads * options_.value_dim);
  return output->forward(result.output.reshape(out_shape));
}

}  // namespace kvtune

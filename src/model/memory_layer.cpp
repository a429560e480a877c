#include "model/memory_layer.h"

#include "attention/sharded_attention.h"
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
  if (options_.query_norm == "layernorm") {
    query_layer_norm = register_module(
        "query_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options_.key_dim})));
  } else if (options_.query_norm == "batchnorm") {
    query_batch_norm =
        register_module("query_norm", torch::nn::BatchNorm1d(options_.heads * options_.key_dim));
  } else {
    KVT_CHECK(options_.query_norm == "none", "memory layer: query_norm '", options_.query_norm,
              "' is unknown: choose none, layernorm or batchnorm");
  }
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

void MemoryLayerImpl::set_sharding(BankSharding sharding) {
  KVT_CHECK(sharding.comm != nullptr, "memory layer: set_sharding needs a communicator");
  KVT_CHECK(!banks_.empty(), "memory layer: attach the base bank's shard before set_sharding");
  KVT_CHECK(!banks_.front()->trainable(),
            "memory layer: a sharded base bank must be frozen (a trainable one is not supported)");
  const int64_t n = banks_.front()->size();
  KVT_CHECK(sharding.offset >= 0 && sharding.offset + n <= sharding.total_rows,
            "memory layer: a shard of ", n, " rows at row ", sharding.offset,
            " does not lie in a bank of ", sharding.total_rows, " rows");
  sharding_ = std::move(sharding);
}

torch::Tensor MemoryLayerImpl::forward(const torch::Tensor& x) {
  KVT_CHECK(!banks_.empty(), "memory layer has no bank attached");
  KVT_CHECK(x.size(-1) == options_.d_model, "memory layer: input has last dim ", x.size(-1),
            ", expected d_model = ", options_.d_model);
  auto lead = x.sizes().slice(0, x.dim() - 1).vec();
  auto q_shape = lead;
  q_shape.push_back(options_.heads);
  q_shape.push_back(options_.key_dim);
  auto projected = query->forward(x);
  if (query_batch_norm) {
    // Running statistics move only while the norm itself trains: a frozen memory layer (method
    // memory, sparse, lora) keeps its buffers byte for byte.
    const auto& bn = query_batch_norm;
    const bool update_stats = is_training() && bn->weight.requires_grad();
    const auto flat = projected.reshape({-1, options_.heads * options_.key_dim});
    projected = torch::batch_norm(flat, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                                  update_stats, bn->options.momentum().value_or(0.1),
                                  bn->options.eps(), /*cudnn_enabled=*/false)
                    .reshape(projected.sizes());
  }
  auto q = projected.reshape(q_shape);
  if (query_layer_norm) q = query_layer_norm->forward(q);
  if (capture_queries_) {
    const auto d = q.detach();
    last_queries_ = d / d.norm(2, -1, true).clamp_min(1e-12);
  }

  std::vector<BankView> views;
  views.reserve(banks_.size());
  for (const auto& b : banks_) views.push_back(b->view());
  KnnAttentionResult result;
  // The global id of the first row this rank holds of each bank.
  std::vector<int64_t> first = bank_offsets(views);
  if (sharding_.comm) {
    KVT_CHECK(!log_scale_.defined(),
              "memory layer: a learned score scale is not supported with a sharded base bank: "
              "set attention.learn_scale: false");
    result =
        sharded_knn_attention(q, ShardedBanks{views, 0, sharding_.offset, sharding_.total_rows},
                              options_.attention, *sharding_.comm);
    for (size_t b = 1; b < views.size(); ++b) first[b] += sharding_.total_rows - views[0].size();
    first[0] = sharding_.offset;
  } else {
    result = knn_attention(q, views, options_.attention,
                           log_scale_.defined() ? log_scale_.exp() : torch::Tensor());
  }
  last_ids_ = result.ids;

  if (options_.track_usage) {
    // Each rank counts the retrievals of its own queries into the rows it holds.
    const auto ids = result.ids.reshape({-1});
    for (size_t b = 0; b < banks_.size(); ++b) {
      const auto in_bank = (ids >= first[b]) & (ids < first[b] + banks_[b]->size());
      banks_[b]->record_usage(ids.masked_select(in_bank) - first[b]);
    }
  }
  auto out_shape = lead;
  out_shape.push_back(options_.heads * options_.value_dim);
  return output->forward(result.output.reshape(out_shape));
}

}  // namespace kvtune

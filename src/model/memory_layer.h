// The memory layer (the seed KNNAttention module made whole): input [..., d_model] ->
// multi-head query projection -> normalize -> kNN attention over any number of banks ->
// heads concatenated -> output projection.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "attention/knn_attention.h"
#include "bank/indexed_bank.h"
#include "common/communicator.h"

namespace kvtune {

struct MemoryLayerOptions {
  int64_t d_model = 0;
  int64_t heads = 4;
  int64_t key_dim = 64;
  int64_t value_dim = 64;
  KnnAttentionOptions attention;
  bool track_usage = false;  // count retrievals into each bank's usage
  // Before the search, on the projected queries: "none"; "layernorm": LayerNorm over each head's
  // key_dim (learned gain and bias); "batchnorm": BatchNorm over every position of the batch,
  // per query feature (heads * key_dim; running statistics in eval mode), as product-key
  // memory does to spread queries over more slots.
  std::string query_norm = "none";
};

// Memory parallelism (docs/distributed.md): the layer's first bank (its base bank) is this rank's
// shard of a bank whose rows are split across the ranks of `comm`; forward then runs
// sharded_knn_attention, a collective that every rank calls as often as the others. The shard is
// frozen when marked; method sparse may then train its rows, each rank its own (the op's backward
// hands every row's gradient, from every rank's queries, to the rank that holds the row).
struct BankSharding {
  Communicator* comm = nullptr;
  int64_t offset = 0;       // the whole bank's row of the shard's row 0
  int64_t total_rows = 0;   // rows of the whole bank
  std::string source;       // the bank file the shard was read from (saving copies it)
  std::string fingerprint;  // the model's fingerprint over the whole banks (model_io.h)
};

class MemoryLayerImpl : public torch::nn::Module {
 public:
  explicit MemoryLayerImpl(MemoryLayerOptions options);

  torch::Tensor forward(const torch::Tensor& x);

  // Banks are searched together; their global ids follow the attach order.
  void attach(std::shared_ptr<IndexedBank> bank);
  void detach_all() { banks_.clear(); }
  const std::vector<std::shared_ptr<IndexedBank>>& banks() const { return banks_; }

  // Marks the first attached bank as this rank's shard (above). Refused for a bank marked
  // trainable.
  void set_sharding(BankSharding sharding);
  // Null unless set_sharding was called.
  const BankSharding* sharding() const { return sharding_.comm ? &sharding_ : nullptr; }
  BankSharding* mutable_sharding() { return sharding_.comm ? &sharding_ : nullptr; }

  // The retrieval of the last forward: ids [..., heads, k] (global, see knn_attention.h).
  const torch::Tensor& last_ids() const { return last_ids_; }
  const MemoryLayerOptions& options() const { return options_; }
  // The attention settings of later forwards (estimator, backward, samples, seed, ...): a
  // trainer sets the recipe's and a new seed each step.
  void set_attention(const KnnAttentionOptions& attention) { options_.attention = attention; }
  // A learned score scale: a 0-dim tensor log c (it may require grad, and may be shared by
  // several layers); while set, it replaces options().attention.scale. Undefined: unset.
  void set_learned_log_scale(torch::Tensor log_scale) { log_scale_ = std::move(log_scale); }
  const torch::Tensor& learned_log_scale() const { return log_scale_; }
  // When on, forward keeps its unit queries [..., heads, key_dim] (detached), e.g. to place a
  // new domain bank's keys by k-means of the queries it will see.
  void set_capture_queries(bool on) { capture_queries_ = on; }
  // When on, forward adds each retrieval to the usage of the bank it came from.
  void set_track_usage(bool on) { options_.track_usage = on; }
  const torch::Tensor& last_queries() const { return last_queries_; }

  torch::nn::Linear query{nullptr};   // d_model -> heads * key_dim (no bias, as the seed)
  torch::nn::Linear output{nullptr};  // heads * value_dim -> d_model
  torch::nn::LayerNorm query_layer_norm{nullptr};    // query_norm "layernorm"
  torch::nn::BatchNorm1d query_batch_norm{nullptr};  // query_norm "batchnorm"

 private:
  MemoryLayerOptions options_;
  std::vector<std::shared_ptr<IndexedBank>> banks_;
  torch::Tensor last_ids_;
  torch::Tensor last_queries_;
  torch::Tensor log_scale_;
  bool capture_queries_ = false;
  BankSharding sharding_;
};
TORCH_MODULE(MemoryLayer);

}  // namespace kvtune

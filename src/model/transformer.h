// The host network: a decoder-only transformer LM with kNN-attention memory layers in some of
// its blocks (docs/model.md has the equations).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/memory_layer.h"
#include "model/model_config.h"
#include "model/transformer_block.h"

namespace kvtune {

// The self-attention keys and values of the positions a model has already read, per block: what
// incremental decoding (forward_cached) reuses instead of reading the prefix again.
struct KvCache {
  std::vector<torch::Tensor> keys, values;  // per block, [B, n_heads, length, d_model / n_heads]
  int64_t length = 0;                       // positions cached
};

class TransformerLMImpl : public torch::nn::Module {
 public:
  // Validates `config` (kvtune::Error on a bad one). Memory layers start with no bank attached:
  // call attach_base_banks() or attach loaded banks before forward().
  explicit TransformerLMImpl(ModelConfig config);

  // tokens [B, T] int64 in [0, vocab_size), T <= max_seq_len -> logits [B, T, vocab_size].
  torch::Tensor forward(const torch::Tensor& tokens);
  // tokens [B, T] at positions cache.length .. cache.length + T - 1 of sequences whose earlier
  // positions are in `cache` (empty at first) -> their logits [B, T, vocab_size]; the cache then
  // holds them too. In eval mode, reading a sequence in pieces gives forward()'s logits (up to
  // float rounding: the products are blocked differently). length + T <= max_seq_len.
  torch::Tensor forward_cached(const torch::Tensor& tokens, KvCache& cache);

  // In block order (the i-th memory layer is in the i-th smallest of memory_blocks).
  std::vector<MemoryLayer> memory_layers() const;
  // Every registered parameter: all but the bank tensors, which live in IndexedBank.
  std::vector<torch::Tensor> transformer_parameters() const { return parameters(); }

  // One random base bank per memory layer (memory.base_bank_size slots, random unit keys, small
  // random values, frozen, indexed per memory.index), named "base_<i>". Deterministic per seed.
  void attach_base_banks(uint64_t seed);

  const ModelConfig& config() const { return config_; }
  // A new score scale (c > 0) for every memory layer and the model's config (memory.scale), as
  // after training it (attention.learn_scale).
  void set_memory_scale(double c);
  // Handles to the blocks (shared: changes through them change the model).
  std::vector<TransformerBlock> blocks() const { return blocks_; }

  torch::nn::Embedding token_embedding{nullptr};     // [vocab_size, d_model], tied LM head
  torch::nn::Embedding position_embedding{nullptr};  // [max_seq_len, d_model]
  torch::nn::LayerNorm final_norm{nullptr};

 private:
  ModelConfig config_;
  std::vector<TransformerBlock> blocks_;
};
TORCH_MODULE(TransformerLM);

}  // namespace kvtune

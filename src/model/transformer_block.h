// One pre-LayerNorm block of the host transformer: causal multi-head self-attention, then a GELU
// feed-forward, a memory layer beside it, or a memory layer in its place (docs/model.md).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "model/lora_linear.h"
#include "model/memory_layer.h"
#include "model/model_config.h"

namespace kvtune {

// Written with matmul + causal mask + softmax (no fused kernel) so that it behaves the same on
// every libtorch version. x [B, T, d_model] -> [B, T, d_model]; position t sees positions <= t.
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_heads, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  // Incremental decoding: x [B, T_new, d_model] holds the positions that follow the `keys` and
  // `values` already computed ([B, H, T_past, Dh], undefined when T_past = 0); the new ones are
  // appended to them. Equal to forward() on the whole sequence, position by position.
  torch::Tensor forward_cached(const torch::Tensor& x, torch::Tensor& keys, torch::Tensor& values);
  // q, k, v, out: the layers LoRA wraps.
  std::vector<AdaptableLinear*> linears() { return {&q_, &k_, &v_, &out_}; }

 private:
  int64_t n_heads_;
  double dropout_;
  AdaptableLinear q_, k_, v_, out_;
};
TORCH_MODULE(CausalSelfAttention);

// x -> down(gelu(up(x))).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t d_model, int64_t d_ff, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  std::vector<AdaptableLinear*> linears() { return {&up_, &down_}; }

 private:
  double dropout_;
  AdaptableLinear up_, down_;
};
TORCH_MODULE(FeedForward);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const ModelConfig& config, bool has_memory);
  torch::Tensor forward(const torch::Tensor& x);
  // forward() of the positions after those whose self-attention keys and values are cached.
  torch::Tensor forward_cached(const torch::Tensor& x, torch::Tensor& keys, torch::Tensor& values);
  // Every linear of the self-attention and the feed-forward (none of the memory layer).
  std::vector<AdaptableLinear*> linears();

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  CausalSelfAttention attn{nullptr};
  FeedForward ffn{nullptr};     // null when the memory layer replaces it
  MemoryLayer memory{nullptr};  // null in blocks without memory
};
TORCH_MODULE(TransformerBlock);

}  // namespace kvtune

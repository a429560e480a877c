#include "model/transformer_block.h"

#include <cmath>
#include <limits>

#include "common/check.h"

namespace kvtune {

namespace {

torch::nn::LinearOptions linear(int64_t in, int64_t out) {
  return torch::nn::LinearOptions(in, out);
}

}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_heads, double dropout)
    : n_heads_(n_heads),
      dropout_(dropout),
      q_(*this, "q", linear(d_model, d_model)),
      k_(*this, "k", linear(d_model, d_model)),
      v_(*this, "v", linear(d_model, d_model)),
      out_(*this, "out", linear(d_model, d_model)) {
  KVT_CHECK(n_heads > 0 && d_model % n_heads == 0, "self-attention: d_model ", d_model,
            " is not divisible by n_heads ", n_heads);
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  torch::Tensor keys, values;  // nothing before x
  return forward_cached(x, keys, values);
}

torch::Tensor CausalSelfAttentionImpl::forward_cached(const torch::Tensor& x, torch::Tensor& keys,
                                                      torch::Tensor& values) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), Dh = C / n_heads_;
  // [B, T, C] -> [B, H, T, Dh]
  auto split = [&](const torch::Tensor& t) { return t.view({B, T, n_heads_, Dh}).transpose(1, 2); };
  const auto q = split(q_.forward(x));
  const int64_t past = keys.defined() ? keys.size(2) : 0;
  KVT_CHECK(past == 0 || (keys.size(0) == B && values.defined() && values.sizes() == keys.sizes()),
            "self-attention: the cached keys and values do not match a batch of ", B);
  keys = past == 0 ? split(k_.forward(x)) : torch::cat({keys, split(k_.forward(x))}, 2);
  values = past == 0 ? split(v_.forward(x)) : torch::cat({values, split(v_.forward(x))}, 2);
  auto scores = q.matmul(keys.transpose(-2, -1)) / std::sqrt(static_cast<double>(Dh));
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  const auto query_pos = torch::arange(past, past + T, opts);
  const auto key_pos = torch::arange(past + T, opts);
  const auto future = key_pos.unsqueeze(0) > query_pos.unsqueeze(1);  // [T, past + T]
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  auto probs = torch::softmax(scores, -1);
  probs = torch::dropout(probs, dropout_, is_training());
  const auto y = probs.matmul(values).transpose(1, 2).contiguous().view({B, T, C});
  return torch::dropout(out_.forward(y), dropout_, is_training());
}

FeedForwardImpl::FeedForwardImpl(int64_t d_model, int64_t d_ff, double dropout)
    : dropout_(dropout),
      up_(*this, "up", linear(d_model, d_ff)),
      down_(*this, "down", linear(d_ff, d_model)) {}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  return torch::dropout(down_.forward(torch::gelu(up_.forward(x))), dropout_, is_training());
}

TransformerBlockImpl::TransformerBlockImpl(const ModelConfig& config, bool has_memory) {
  const int64_t C = config.d_model;
  ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
  attn = register_module("attn", CausalSelfAttention(C, config.n_heads, config.dropout));
  ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
  const bool replace = has_memory && config.memory_placement == "replace_ffn";
  if (!replace) ffn = register_module("ffn", FeedForward(C, config.d_ff, config.dropout));
  if (has_memory) {
    MemoryLayerOptions options;
    options.d_model = C;
    options.heads = config.memory.heads;
    options.key_dim = config.memory.key_dim;
    options.value_dim = config.memory.value_dim;
    options.query_norm = config.memory.query_norm;
    options.attention = config.memory.attention;
    memory = register_module("memory", MemoryLayer(options));
  }
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor keys, values;
  return forward_cached(x, keys, values);
}

torch::Tensor TransformerBlockImpl::forward_cached(const torch::Tensor& x, torch::Tensor& keys,
                                                   torch::Tensor& values) {
  auto h = x + attn->forward_cached(ln1->forward(x), keys, values);
  const auto normed = ln2->forward(h);
  if (ffn) h = h + ffn->forward(normed);
  if (memory) h = h + memory->forward(normed);
  return h;
}

std::vector<AdaptableLinear*> TransformerBlockImpl::linears() {
  auto all = attn->linears();
  if (ffn) {
    for (auto* l : ffn->linears()) all.push_back(l);
  }
  return all;
}

}  // namespace kvtune

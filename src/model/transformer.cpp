#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "bank/bank.h"
#include "bank/indexed_bank.h"
#include "common/check.h"
#include "model/model_config_yaml.h"

namespace kvtune {

namespace {

constexpr double kInitStd = 0.02;  // GPT-2's init

// GPT-2 style: N(0, 0.02) weights and zero biases; the projections that write into the residual
// stream are scaled down by sqrt(2 * n_layers) so its variance does not grow with depth.
void init_linear(const torch::nn::Linear& linear, double std) {
  torch::NoGradGuard no_grad;
  linear->weight.normal_(0.0, std);
  if (linear->bias.defined()) linear->bias.zero_();
}

}  // namespace

TransformerLMImpl::TransformerLMImpl(ModelConfig config) : config_(std::move(config)) {
  validate(config_, "model config '" + config_.name + "'");
  const int64_t C = config_.d_model;
  token_embedding = register_module("token_embedding", torch::nn::Embedding(config_.vocab_size, C));
  position_embedding =
      register_module("position_embedding", torch::nn::Embedding(config_.max_seq_len, C));
  torch::nn::ModuleList list;
  for (int64_t b = 0; b < config_.n_layers; ++b) {
    const bool has_memory =
        std::count(config_.memory_blocks.begin(), config_.memory_blocks.end(), b) > 0;
    blocks_.push_back(TransformerBlock(config_, has_memory));
    list->push_back(blocks_.back());
  }
  register_module("blocks", list);
  final_norm =
      register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));

  torch::NoGradGuard no_grad;
  token_embedding->weight.normal_(0.0, kInitStd);
  position_embedding->weight.normal_(0.0, kInitStd);
  const double residual_std = kInitStd / std::sqrt(2.0 * static_cast<double>(config_.n_layers));
  for (auto& block : blocks_) {
    for (auto* slot : block->linears()) {
      const bool residual = slot->name() == "out" || slot->name() == "down";
      init_linear(slot->linear(), residual ? residual_std : kInitStd);
    }
  }
}

torch::Tensor TransformerLMImpl::forward(const torch::Tensor& tokens) {
  KvCache cache;
  return forward_cached(tokens, cache);
}

torch::Tensor TransformerLMImpl::forward_cached(const torch::Tensor& tokens, KvCache& cache) {
  KVT_CHECK(tokens.dim() == 2 && tokens.scalar_type() == torch::kLong,
            "transformer: tokens must be an int64 tensor [batch, time], got ", tokens.scalar_type(),
            " of shape ", tokens.sizes());
  const int64_t T = tokens.size(1), past = cache.length;
  KVT_CHECK(T > 0 && past >= 0 && past + T <= config_.max_seq_len, "transformer: sequence length ",
            past + T, " is outside [1, max_seq_len = ", config_.max_seq_len,
            "]: cut the input into windows of at most max_seq_len tokens");
  if (tokens.numel() > 0) {
    const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    KVT_CHECK(lo >= 0 && hi < config_.vocab_size, "transformer: token ids span [", lo, ", ", hi,
              "] but the vocabulary is [0, ", config_.vocab_size,
              "): encode text with the model's tokenizer");
  }
  if (past == 0) {
    cache.keys.assign(blocks_.size(), torch::Tensor());
    cache.values.assign(blocks_.size(), torch::Tensor());
  }
  KVT_CHECK(cache.keys.size() == blocks_.size() && cache.values.size() == blocks_.size(),
            "transformer: the cache holds ", cache.keys.size(), " blocks, the model has ",
            blocks_.size());
  const auto positions = torch::arange(past, past + T, tokens.options());
  auto x = token_embedding->forward(tokens) + position_embedding->forward(positions);
  x = torch::dropout(x, config_.dropout, is_training());
  for (size_t b = 0; b < blocks_.size(); ++b) {
    x = blocks_[b]->forward_cached(x, cache.keys[b], cache.values[b]);
  }
  cache.length = past + T;
  x = final_norm->forward(x);
  return torch::nn::functional::linear(x, token_embedding->weight);
}

std::vector<MemoryLayer> TransformerLMImpl::memory_layers() const {
  std::vector<MemoryLayer> layers;
  for (const auto& block : blocks_) {
    if (block->memory) layers.push_back(block->memory);
  }
  return layers;
}

void TransformerLMImpl::set_memory_scale(double c) {
  KVT_CHECK(std::isfinite(c) && c > 0, "memory scale must be finite and > 0, got ", c);
  config_.memory.attention.scale = c;
  for (auto& layer : memory_layers()) {
    KnnAttentionOptions a = layer->options().attention;
    a.scale = c;
    layer->set_attention(a);
  }
}

void TransformerLMImpl::attach_base_banks(uint64_t seed) {
  const MemoryConfig& mc = config_.memory;
  int64_t i = 0;  // memory layer number
  for (size_t b = 0; b < blocks_.size(); ++b) {
    MemoryLayer layer = blocks_[b]->memory;
    if (!layer) continue;
    KVT_CHECK(layer->banks().empty(), "attach_base_banks: the memory layer of block ", b,
              " already has a bank attached (call detach_all() on it first)");
    // Distinct, reproducible streams per layer.
    const uint64_t layer_seed = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i);
    Bank bank = make_random_bank("base_" + std::to_string(i), mc.base_bank_size, mc.key_dim,
                                 mc.value_dim, layer_seed, /*trainable=*/false);
    bank.meta.score_scale = mc.attention.scale;
    auto provenance =
        nlohmann::json::parse(bank.meta.provenance, nullptr, /*allow_exceptions=*/false);
    if (!provenance.is_object()) provenance = nlohmann::json::object();
    provenance["model"] = config_.name;
    provenance["block"] = b;
    bank.meta.provenance = provenance.dump();
    layer->attach(std::make_shared<IndexedBank>(std::move(bank), mc.index));
    ++i;
  }
}

}  // namespace kvtune

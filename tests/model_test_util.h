// Helpers for the model tests: the shipped tiny config, cut down where a test needs speed.
#pragma once

#include <algorithm>
#include <string>

#include <torch/torch.h>

#include "model/model_config.h"
#include "model/model_config_yaml.h"
#include "model/transformer.h"
#include "test_util.h"

namespace kvtune::test {

inline std::string model_config_path(const std::string& name) {
  return source_dir() + "/configs/models/" + name + ".yaml";
}

// configs/models/tiny.yaml; `bank_size` > 0 shrinks the base bank (and k with it).
inline ModelConfig tiny_config(int64_t bank_size = 0) {
  ModelConfig c = load_model_config(model_config_path("tiny"));
  if (bank_size > 0) {
    c.memory.base_bank_size = bank_size;
    c.memory.attention.k = std::min<int64_t>(c.memory.attention.k, bank_size);
  }
  return c;
}

// A very small model (2 blocks of width 32, one memory layer over 256 slots): fast enough for
// tests that train or generate.
inline ModelConfig micro_config() {
  ModelConfig m;
  m.name = "micro";
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 2;
  m.d_ff = 64;
  m.max_seq_len = 32;
  m.memory_blocks = {1};
  m.memory.heads = 2;
  m.memory.key_dim = 8;
  m.memory.value_dim = 8;
  m.memory.base_bank_size = 256;
  m.memory.attention.k = 8;
  return m;
}

// A model with its base banks attached, weights drawn from `seed`.
inline TransformerLM make_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  TransformerLM model(config);
  model->attach_base_banks(seed);
  return model;
}

inline torch::Tensor random_tokens(int64_t batch, int64_t time, int64_t vocab = 259) {
  return torch::randint(0, vocab, {batch, time}, torch::kLong);
}

}  // namespace kvtune::test

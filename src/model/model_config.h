// Sizes and structure of the host transformer and its memory layers (configs/models/*.yaml).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/knn_attention.h"
#include "index/index_config.h"

namespace kvtune {

struct MemoryConfig {
  int64_t heads = 4;
  int64_t key_dim = 32;
  int64_t value_dim = 32;
  int64_t base_bank_size = 4096;  // slots of the frozen base bank made at pretraining
  bool learned_keys = false;      // pretraining trains base keys too (default: random, frozen)
  // Normalization of the projected queries before the search (memory_layer.h): "none",
  // "layernorm" (per head, over key_dim) or "batchnorm" (over positions, per query feature).
  std::string query_norm = "none";
  KnnAttentionOptions attention;  // estimator, k, scale (0 = sqrt(key_dim))
  IndexConfig index;              // base bank index
};

struct ModelConfig {
  std::string name = "tiny";
  // "byte" (256 bytes + pad, bos, eos: vocab_size 259) or "sentencepiece" (a subword model of
  // vocab_size pieces, trained at pretraining: model/sentencepiece_tokenizer.h).
  std::string tokenizer = "byte";
  int64_t vocab_size = 259;
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t d_ff = 512;
  int64_t max_seq_len = 128;
  double dropout = 0.0;
  // Blocks (0-based) that hold a memory layer, and where: "beside_ffn" adds the memory
  // layer's output to the block's residual stream next to the feed-forward block;
  // "replace_ffn" puts it in place of the feed-forward block.
  std::vector<int64_t> memory_blocks = {1};
  std::string memory_placement = "beside_ffn";
  MemoryConfig memory;
};

}  // namespace kvtune

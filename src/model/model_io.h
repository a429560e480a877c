// A model folder (docs/model.md): everything needed to rebuild a model bit for bit.
//   config.yaml      the ModelConfig (to_yaml)
//   tokenizer.json   the tokenizer (Tokenizer::save)
//   model.pt         every transformer parameter and buffer by name (save_module_state)
//   checksums.json   size and CRC-32 of model.pt: a damaged or altered file is refused
//   bank_<i>.h5      the base bank of memory layer i (i = 0, 1, ... in block order)
//   bank_<i>.faiss   its index (IndexedBank::save)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/communicator.h"
#include "model/model_config.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace kvtune {

inline constexpr const char* kModelConfigFile = "config.yaml";
inline constexpr const char* kTokenizerFile = "tokenizer.json";
inline constexpr const char* kModelWeightsFile = "model.pt";
inline constexpr const char* kModelChecksumsFile = "checksums.json";
// "bank_<i>.h5" (its index: "bank_<i>.faiss").
std::string base_bank_file(int64_t memory_layer);

struct LoadedModel {
  ModelConfig config;
  std::shared_ptr<Tokenizer> tokenizer;
  TransformerLM model{nullptr};  // base banks attached
};

// Creates `dir` if needed and writes every file, each atomically. `config` must be the model's
// own; a model with LoRA adapters must be merged first (merge_lora); every memory layer needs a
// base bank (its first attached bank; banks attached later are not saved here).
void save_model(const std::string& dir, const TransformerLM& model, const ModelConfig& config,
                const Tokenizer& tokenizer);

// Errors name the folder or file: missing ones, weights that do not match checksums.json or
// hold non-finite values, a config that does not match the saved tensors
// (tensor name and both shapes), a bank whose dims do not match its memory layer.
LoadedModel load_model(const std::string& dir);

// load_model with every base bank split across the ranks of `shard_over` (memory parallelism,
// docs/distributed.md), when it is not null: each rank reads only its share of the rows of
// bank_<i>.h5 (read_bank_share), builds its shard's index from config memory.index (the saved
// index covers every row) and marks the layer sharded (MemoryLayer::set_sharding), the bank
// frozen. A collective: every rank calls it. The model's fingerprint over the whole banks is
// worked out rank by rank and kept with the layers (model_fingerprint returns it). save_model
// then copies each base bank's file (and index) from where its shards were read.
LoadedModel load_model(const std::string& dir, Communicator* shard_over);

// 16 hex digits of FNV-1a 64 over the config's YAML text and, in order, each base bank's key
// shape and bytes: a bank made for one model can be refused by another.
std::string model_fingerprint(const ModelConfig& config,
                              const std::vector<torch::Tensor>& base_bank_keys);
// The same over model->config() and the first bank of each memory layer.
std::string model_fingerprint(const TransformerLM& model);

}  // namespace kvtune

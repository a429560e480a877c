#include "model/model_config_yaml.h"

#include "index/index_config_yaml.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "attention/estimator.h"
#include "common/check.h"
#include "common/names.h"
#include "common/yaml_reader.h"
#include "model/byte_tokenizer.h"
#include "model/sentencepiece_tokenizer.h"
#include "model/tokenizer.h"

namespace kvtune {

namespace {

void read_memory(YamlReader r, MemoryConfig& memory) {
  r.get("heads", memory.heads)
      .get("key_dim", memory.key_dim)
      .get("value_dim", memory.value_dim)
      .get("base_bank_size", memory.base_bank_size)
      .get("learned_keys", memory.learned_keys)
      .get("query_norm", memory.query_norm)
      .get("estimator", memory.attention.estimator)
      .get("k", memory.attention.k)
      .get("scale", memory.attention.scale);
  YamlReader index = r.child("index");
  memory.index = index_config_from_yaml(index);
  r.finish();
}

}  // namespace

void apply_model_yaml(const YAML::Node& node, const std::string& where, ModelConfig& config) {
  YamlReader r(node, where);
  r.get("name", config.name)
      .get("tokenizer", config.tokenizer)
      .get("vocab_size", config.vocab_size)
      .get("d_model", config.d_model)
      .get("n_layers", config.n_layers)
      .get("n_heads", config.n_heads)
      .get("d_ff", config.d_ff)
      .get("max_seq_len", config.max_seq_len)
      .get("dropout", config.dropout)
      .get("memory_blocks", config.memory_blocks)
      .get("memory_placement", config.memory_placement);
  read_memory(r.child("memory"), config.memory);
  r.finish();
}

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where) {
  ModelConfig config;
  apply_model_yaml(node, where, config);
  validate(config, where);
  return config;
}

ModelConfig load_model_config(const std::string& path) {
  return model_config_from_yaml(load_yaml_file(path), path);
}

YAML::Node to_yaml(const ModelConfig& config) {
  const YAML::Node index = to_yaml(config.memory.index);

  YAML::Node memory;
  const MemoryConfig& mc = config.memory;
  memory["heads"] = mc.heads;
  memory["key_dim"] = mc.key_dim;
  memory["value_dim"] = mc.value_dim;
  memory["base_bank_size"] = mc.base_bank_size;
  memory["learned_keys"] = mc.learned_keys;
  // Written only when set, so that the YAML (hence the fingerprint) of models without it stays
  // what it was.
  if (mc.query_norm != "none") memory["query_norm"] = mc.query_norm;
  memory["estimator"] = mc.attention.estimator;
  memory["k"] = mc.attention.k;
  memory["scale"] = mc.attention.scale;
  memory["index"] = index;

  YAML::Node blocks(YAML::NodeType::Sequence);
  for (const int64_t b : config.memory_blocks) blocks.push_back(b);
  blocks.SetStyle(YAML::EmitterStyle::Flow);

  YAML::Node node;
  node["name"] = config.name;
  // Written only when not the byte tokenizer, so that the YAML (hence the fingerprint) of
  // byte-level models stays what it was.
  if (config.tokenizer != "byte") node["tokenizer"] = config.tokenizer;
  node["vocab_size"] = config.vocab_size;
  node["d_model"] = config.d_model;
  node["n_layers"] = config.n_layers;
  node["n_heads"] = config.n_heads;
  node["d_ff"] = config.d_ff;
  node["max_seq_len"] = config.max_seq_len;
  node["dropout"] = config.dropout;
  node["memory_blocks"] = blocks;
  node["memory_placement"] = config.memory_placement;
  node["memory"] = memory;
  return node;
}

std::string to_yaml_string(const ModelConfig& config) {
  YAML::Emitter out;
  out << to_yaml(config);
  return std::string(out.c_str()) + "\n";
}

void validate(const ModelConfig& c, const std::string& where) {
  const std::pair<const char*, int64_t> sizes[] = {
      {"d_model", c.d_model},
      {"n_layers", c.n_layers},
      {"n_heads", c.n_heads},
      {"d_ff", c.d_ff},
      {"max_seq_len", c.max_seq_len},
      {"memory.heads", c.memory.heads},
      {"memory.key_dim", c.memory.key_dim},
      {"memory.value_dim", c.memory.value_dim},
      {"memory.base_bank_size", c.memory.base_bank_size},
      {"memory.k", c.memory.attention.k}};
  for (const auto& [key, value] : sizes) {
    KVT_CHECK(value > 0, where, ": key '", key, "' must be positive, got ", value);
  }
  const auto& types = tokenizer_types();
  KVT_CHECK(std::find(types.begin(), types.end(), c.tokenizer) != types.end(), where,
            ": key 'tokenizer' is '", c.tokenizer, "'; valid: ", join_names(types));
  if (c.tokenizer == "byte") {
    KVT_CHECK(c.vocab_size >= ByteTokenizer::kVocabSize, where, ": key 'vocab_size' is ",
              c.vocab_size, " but the byte tokenizer needs at least ", ByteTokenizer::kVocabSize,
              " (256 bytes + pad, bos, eos): set vocab_size: ", ByteTokenizer::kVocabSize);
  } else {
    // The embedding and output layers are vocab_size rows: a bound keeps them allocatable.
    KVT_CHECK(c.vocab_size >= SentencePieceTokenizer::kMinVocabSize && c.vocab_size <= 262144,
              where, ": key 'vocab_size' is ", c.vocab_size, "; a sentencepiece tokenizer needs ",
              SentencePieceTokenizer::kMinVocabSize,
              " to 262144 pieces (4 specials + 256 byte pieces + subwords), e.g. 2048");
  }
  KVT_CHECK(c.d_model % c.n_heads == 0, where, ": d_model ", c.d_model,
            " is not divisible by n_heads ", c.n_heads,
            ": choose n_heads dividing d_model (each head gets d_model / n_heads dims)");
  KVT_CHECK(c.dropout >= 0.0 && c.dropout < 1.0, where, ": key 'dropout' must be in [0, 1), got ",
            c.dropout);
  std::set<int64_t> seen;
  for (const int64_t b : c.memory_blocks) {
    KVT_CHECK(b >= 0 && b < c.n_layers, where, ": memory_blocks holds block ", b,
              ", outside [0, n_layers) = [0, ", c.n_layers, "): blocks are numbered from 0");
    KVT_CHECK(seen.insert(b).second, where, ": memory_blocks lists block ", b,
              " twice: list each block once");
  }
  KVT_CHECK(c.memory_placement == "beside_ffn" || c.memory_placement == "replace_ffn", where,
            ": memory_placement is '", c.memory_placement,
            "': choose one of beside_ffn, replace_ffn");
  const auto names = estimator_names();
  KVT_CHECK(std::find(names.begin(), names.end(), c.memory.attention.estimator) != names.end(),
            where, ": memory.estimator '", c.memory.attention.estimator,
            "' is unknown: choose one of ", join_names(names));
  KVT_CHECK(c.memory.attention.k <= c.memory.base_bank_size, where, ": memory.k ",
            c.memory.attention.k, " is larger than memory.base_bank_size ", c.memory.base_bank_size,
            ": lower k or grow the bank");
  KVT_CHECK(std::isfinite(c.memory.attention.scale) && c.memory.attention.scale >= 0.0, where,
            ": memory.scale must be finite and >= 0 (0 means sqrt(key_dim)), got ",
            c.memory.attention.scale);
  KVT_CHECK(c.memory.query_norm == "none" || c.memory.query_norm == "layernorm" ||
                c.memory.query_norm == "batchnorm",
            where, ": memory.query_norm is '", c.memory.query_norm,
            "': choose one of none, layernorm, batchnorm");
  validate(c.memory.index, where, "memory.index");
}

}  // namespace kvtune

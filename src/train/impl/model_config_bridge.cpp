// TODO(integration): model/model_config_yaml.h is being written on another branch. When it is
// in the tree, __has_include below switches these three functions to it; then delete the
// interim code in the #else branches (and, if wanted, this bridge: call the three functions
// directly from recipe_io.cpp and recipe_validate.cpp).
#include "train/impl/model_config_bridge.h"

#include <algorithm>

#include "common/check.h"
#include "common/yaml_reader.h"

#if __has_include("model/model_config_yaml.h")
#include "model/model_config_yaml.h"
#define KVTUNE_HAVE_MODEL_CONFIG_YAML 1
#else
#include "attention/estimator.h"
#endif

namespace kvtune::detail {

bool model_config_yaml_available() {
#ifdef KVTUNE_HAVE_MODEL_CONFIG_YAML
  return true;
#else
  return false;
#endif
}

ModelConfig model_config_from_node(const YAML::Node& node, const std::string& where) {
#ifdef KVTUNE_HAVE_MODEL_CONFIG_YAML
  return model_config_from_yaml(node, where);
#else
  // Interim: only the keys recipe validation needs; every other key keeps its default and is
  // not checked (no finish()): model_config_from_yaml will read all of them strictly.
  ModelConfig m;
  YamlReader top(node, where);
  top.get("name", m.name).get("max_seq_len", m.max_seq_len);
  YamlReader memory = top.child("memory");
  // The model YAML layout (configs/models/tiny.yaml) puts estimator, k, scale under memory.
  memory.get("key_dim", m.memory.key_dim)
      .get("value_dim", m.memory.value_dim)
      .get("estimator", m.memory.attention.estimator)
      .get("k", m.memory.attention.k);
  return m;
#endif
}

YAML::Node model_config_to_node(const ModelConfig& config) {
#ifdef KVTUNE_HAVE_MODEL_CONFIG_YAML
  return to_yaml(config);
#else
  // Interim: the keys model_config_from_node reads, so that a saved recipe loads back equal.
  YAML::Node n(YAML::NodeType::Map);
  n["name"] = config.name;
  n["max_seq_len"] = config.max_seq_len;
  n["memory"]["key_dim"] = config.memory.key_dim;
  n["memory"]["value_dim"] = config.memory.value_dim;
  n["memory"]["estimator"] = config.memory.attention.estimator;
  n["memory"]["k"] = config.memory.attention.k;
  return n;
#endif
}

void validate_model_config(const ModelConfig& config, const std::string& where) {
#ifdef KVTUNE_HAVE_MODEL_CONFIG_YAML
  validate(config, where);
#else
  // Interim: the ranges of the keys read above.
  auto positive = [&](const char* key, int64_t v) {
    KVT_CHECK(v > 0, where, ": model key '", key, "' must be > 0, got ", v);
  };
  positive("max_seq_len", config.max_seq_len);
  positive("memory.key_dim", config.memory.key_dim);
  positive("memory.value_dim", config.memory.value_dim);
  positive("memory.k", config.memory.attention.k);
  const auto names = estimator_names();
  if (std::find(names.begin(), names.end(), config.memory.attention.estimator) == names.end()) {
    std::string valid;
    for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
    KVT_THROW(where, ": model key 'memory.estimator' is '", config.memory.attention.estimator,
              "', expected one of: ", valid);
  }
#endif
}

}  // namespace kvtune::detail

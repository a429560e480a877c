// ModelConfig <-> YAML (configs/models/*.yaml, a model folder's config.yaml), and the checks a
// model config must pass before a model is built from it.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "model/model_config.h"

namespace kvtune {

// Built-in defaults, then the keys of `node`; unknown keys are errors naming `where` and the
// dotted key. The result is validated.
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where);

// Overlays the keys present in `node` on `config` (strict, not validated): for overrides
// applied on top of a named config, validated once at the end.
void apply_model_yaml(const YAML::Node& node, const std::string& where, ModelConfig& config);

// load_yaml_file + model_config_from_yaml.
ModelConfig load_model_config(const std::string& path);

// Every field, in the layout model_config_from_yaml reads (a lossless round trip).
YAML::Node to_yaml(const ModelConfig& config);
// to_yaml as text, the bytes written to config.yaml.
std::string to_yaml_string(const ModelConfig& config);

// Throws kvtune::Error naming `where`, the key and the fix for the first broken constraint.
void validate(const ModelConfig& config, const std::string& where);

}  // namespace kvtune

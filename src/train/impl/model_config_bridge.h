// The recipe code's only door to ModelConfig <-> YAML. model/model_config_yaml.h (another
// branch) provides model_config_from_yaml, to_yaml and validate; until it lands, a minimal
// interim reads just the keys recipes check. See model_config_bridge.cpp.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "model/model_config.h"

namespace kvtune::detail {

ModelConfig model_config_from_node(const YAML::Node& node, const std::string& where);
YAML::Node model_config_to_node(const ModelConfig& config);
void validate_model_config(const ModelConfig& config, const std::string& where);

// True when the functions above forward to model/model_config_yaml.h.
bool model_config_yaml_available();

}  // namespace kvtune::detail

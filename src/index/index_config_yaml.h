// IndexConfig from and to YAML (configs/index/*.yaml, or a map inline in a recipe or model).
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/yaml_reader.h"
#include "index/index_config.h"

namespace kvtune {

// Reads the keys factory, nprobe, ef_search, rebuild_interval, train_size and seed (each
// optional, defaults from IndexConfig) and calls reader.finish(): any other key is an error.
IndexConfig index_config_from_yaml(YamlReader& reader);

// Reads configs/index/NAME.yaml-style file at `path` (strict; errors name the file).
IndexConfig load_index_config(const std::string& path);

// Every key, so the map reads back to an equal IndexConfig.
YAML::Node to_yaml(const IndexConfig& config);

// Throws kvtune::Error naming `where` and `key` (the dotted path of the index) when a value is
// out of range: empty factory, negative nprobe, ef_search, rebuild_interval or train_size.
void validate(const IndexConfig& config, const std::string& where, const std::string& key);

// The two ways a config may name an index: `index: ivf` (a name: configs_dir/index/ivf.yaml, or
// a path when it contains '/' or ends in .yaml) or the map inline (`index: {factory: HNSW32}`).
// An absent or null node gives the default (Flat). `key` is the dotted path, for messages.
IndexConfig resolve_index_config(const YAML::Node& node, const std::string& configs_dir,
                                 const std::string& where, const std::string& key);

// The file a name stands for (configs_dir/index/NAME.yaml), or `name` itself when it is a path.
std::string index_config_path(const std::string& name, const std::string& configs_dir);

// Names of the index configs shipped in configs_dir/index/ (file stems, sorted).
std::vector<std::string> index_config_names(const std::string& configs_dir);

}  // namespace kvtune

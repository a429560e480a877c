// Configs chosen by name: `index: ivf` means configs/index/ivf.yaml, `model: tiny` means
// configs/models/tiny.yaml; a value that looks like a path is used as the path itself.
#pragma once

#include <string>
#include <vector>

namespace kvtune {

// True when `value` is a path rather than a name: it contains '/' or ends in .yaml or .yml.
bool is_config_path(const std::string& value);

// `value` itself when it is a path, else dir/VALUE.yaml.
std::string named_config_path(const std::string& value, const std::string& dir);

// Stems of the *.yaml files in `dir`, sorted; empty when `dir` does not exist.
std::vector<std::string> named_configs_in(const std::string& dir);

// Checks the file `value` stands for exists. Otherwise throws kvtune::Error:
// "WHERE: key 'KEY': no KIND config 'x' (dir/x.yaml does not exist; available: a, b)".
std::string find_named_config(const std::string& value, const std::string& dir,
                              const std::string& kind, const std::string& where,
                              const std::string& key);

}  // namespace kvtune

#include "common/yaml_reader.h"

#include <filesystem>

namespace kvtune {

YamlReader::YamlReader(YAML::Node node, std::string where, std::string prefix)
    : node_(std::move(node)), where_(std::move(where)), prefix_(std::move(prefix)) {
  KVT_CHECK(!node_.IsDefined() || node_.IsNull() || node_.IsMap(), where_, ": ",
            prefix_.empty() ? std::string("the top level") : "key '" + prefix_ + "'",
            " must be a map of key: value");
}

bool YamlReader::has(const std::string& key) const {
  if (!node_.IsDefined() || node_.IsNull()) return false;
  const YAML::Node v = node_[key];
  return v.IsDefined() && !v.IsNull();
}

YamlReader YamlReader::child(const std::string& key) {
  known_.insert(key);
  YAML::Node v = has(key) ? node_[key] : YAML::Node();
  return YamlReader(v, where_, path(key));
}

void YamlReader::finish() const {
  if (!node_.IsDefined() || node_.IsNull()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.as<std::string>();
    if (known_.count(key)) continue;
    std::string valid;
    for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
    KVT_THROW(where_, ": unknown key '", path(key), "' (valid keys here: ", valid, ")");
  }
}

YAML::Node load_yaml_file(const std::string& path) {
  KVT_CHECK(std::filesystem::is_regular_file(path), "file ", path, " does not exist");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    KVT_THROW(path, ": not valid YAML: ", e.what());
  }
}

}  // namespace kvtune

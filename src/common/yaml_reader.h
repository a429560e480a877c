// Strict reading of YAML maps into structs: every key is typed, unknown keys are errors that
// list the valid ones (a typo must not be silently ignored), and every message names the
// file and the dotted key path.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/check.h"

namespace kvtune {

class YamlReader {
 public:
  // `where` names the source ("recipes/foldoc.yaml"), `prefix` the key path ("train").
  YamlReader(YAML::Node node, std::string where, std::string prefix = "");

  // Reads `key` into `out` when present (else leaves the default). Wrong type: an error.
  template <typename T>
  YamlReader& get(const std::string& key, T& out) {
    known_.insert(key);
    if (!node_.IsDefined() || node_.IsNull()) return *this;
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return *this;
    try {
      out = v.as<T>();
    } catch (const YAML::Exception&) {
      KVT_THROW(where_, ": key '", path(key), "' must be ", type_name<T>(), ", got '",
                YAML::Dump(v), "'");
    }
    return *this;
  }

  // As get(), but the key must be present.
  template <typename T>
  YamlReader& require(const std::string& key, T& out) {
    KVT_CHECK(has(key), where_, ": key '", path(key), "' is required");
    return get(key, out);
  }

  bool has(const std::string& key) const;
  // A nested map (an absent key gives an empty reader). Call finish() on it too.
  YamlReader child(const std::string& key);
  // Throws if the map holds keys that were never asked for.
  void finish() const;

  std::string path(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }
  const std::string& where() const { return where_; }

 private:
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>)
      return "true or false";
    else if constexpr (std::is_integral_v<T>)
      return "an integer";
    else if constexpr (std::is_floating_point_v<T>)
      return "a number";
    else if constexpr (std::is_same_v<T, std::string>)
      return "a string";
    else
      return "a list";
  }

  YAML::Node node_;
  std::string where_;
  std::string prefix_;
  std::set<std::string> known_;
};

// Loads a YAML file; a missing file, a syntax error, a key repeated in one map, or more than one
// YAML document is a kvtune::Error naming the file (and the line of a repeated key).
YAML::Node load_yaml_file(const std::string& path);

// As load_yaml_file, for text already in memory; `where` names it in messages.
YAML::Node load_yaml_string(const std::string& text, const std::string& where);

}  // namespace kvtune

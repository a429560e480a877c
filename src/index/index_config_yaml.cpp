#include "index/index_config_yaml.h"

#include <filesystem>

#include "common/check.h"
#include "common/named_config.h"

namespace kvtune {

IndexConfig index_config_from_yaml(YamlReader& reader) {
  IndexConfig c;
  reader.get("factory", c.factory)
      .get("nprobe", c.nprobe)
      .get("ef_search", c.ef_search)
      .get("rebuild_interval", c.rebuild_interval)
      .get("train_size", c.train_size)
      .get("seed", c.seed);
  reader.finish();
  return c;
}

IndexConfig load_index_config(const std::string& path) {
  YamlReader reader(load_yaml_file(path), path);
  return index_config_from_yaml(reader);
}

YAML::Node to_yaml(const IndexConfig& c) {
  YAML::Node n(YAML::NodeType::Map);
  n["factory"] = c.factory;
  n["nprobe"] = c.nprobe;
  n["ef_search"] = c.ef_search;
  n["rebuild_interval"] = c.rebuild_interval;
  n["train_size"] = c.train_size;
  n["seed"] = c.seed;
  return n;
}

void validate(const IndexConfig& c, const std::string& where, const std::string& key) {
  auto check_non_negative = [&](const char* name, int64_t v) {
    KVT_CHECK(v >= 0, where, ": key '", key, ".", name, "' must be >= 0 (0 = the default), got ",
              v);
  };
  KVT_CHECK(!c.factory.empty(), where, ": key '", key,
            ".factory' is empty: give a faiss factory string such as Flat, IVF256,Flat, HNSW32");
  check_non_negative("nprobe", c.nprobe);
  check_non_negative("ef_search", c.ef_search);
  check_non_negative("rebuild_interval", c.rebuild_interval);
  check_non_negative("train_size", c.train_size);
}

std::string index_config_path(const std::string& name, const std::string& configs_dir) {
  return named_config_path(name, (std::filesystem::path(configs_dir) / "index").string());
}

std::vector<std::string> index_config_names(const std::string& configs_dir) {
  return named_configs_in((std::filesystem::path(configs_dir) / "index").string());
}

IndexConfig resolve_index_config(const YAML::Node& node, const std::string& configs_dir,
                                 const std::string& where, const std::string& key) {
  if (!node.IsDefined() || node.IsNull()) return IndexConfig{};
  if (node.IsMap()) {
    YamlReader reader(node, where, key);
    return index_config_from_yaml(reader);
  }
  KVT_CHECK(node.IsScalar(), where, ": key '", key,
            "' must be an index config name (flat, ivf, hnsw, ...), a path, or a map of "
            "factory, nprobe, ef_search, rebuild_interval, train_size, seed");
  const std::string dir = (std::filesystem::path(configs_dir) / "index").string();
  return load_index_config(find_named_config(node.Scalar(), dir, "index", where, key));
}

}  // namespace kvtune

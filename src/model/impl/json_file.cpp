#include "model/impl/json_file.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/names.h"
#include "common/path_checks.h"

namespace kvtune::detail {

nlohmann::json read_json_object(const std::string& path, const std::string& what) {
  KVT_CHECK(is_file(path), what, " ", path, " does not exist");
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  KVT_CHECK(f.good() || f.eof(), "cannot read ", what, " ", path);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    KVT_THROW(path, ": not valid JSON (", e.what(), ")");
  }
  KVT_CHECK(json.is_object(), path, ": a ", what, " holds a JSON object, got ", json.type_name());
  return json;
}

int64_t json_int(const nlohmann::json& json, const std::string& key, const std::string& path) {
  KVT_CHECK(json.contains(key) && json.at(key).is_number_integer(), path, ": key '", key,
            "' must be an integer");
  return json.at(key).get<int64_t>();
}

void check_json_keys(const nlohmann::json& json, const std::vector<std::string>& valid,
                     const std::string& path) {
  for (const auto& item : json.items()) {
    const bool known = std::find(valid.begin(), valid.end(), item.key()) != valid.end();
    KVT_CHECK(known, path, ": unknown key '", item.key(), "' (valid keys: ", join_names(valid),
              ")");
  }
}

}  // namespace kvtune::detail

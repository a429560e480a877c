#include "common/named_config.h"

#include <algorithm>
#include <filesystem>

#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool is_config_path(const std::string& value) {
  return value.find('/') != std::string::npos || ends_with(value, ".yaml") ||
         ends_with(value, ".yml");
}

std::string named_config_path(const std::string& value, const std::string& dir) {
  if (is_config_path(value)) return value;
  return (fs::path(dir) / (value + ".yaml")).string();
}

std::vector<std::string> named_configs_in(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return names;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec) && e.path().extension() == ".yaml") {
      names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string find_named_config(const std::string& value, const std::string& dir,
                              const std::string& kind, const std::string& where,
                              const std::string& key) {
  KVT_CHECK(!value.empty(), where, ": key '", key, "' is empty: give a ", kind,
            " config name or a path");
  const std::string path = named_config_path(value, dir);
  if (is_file(path)) return path;
  if (is_config_path(value)) {
    KVT_THROW(where, ": key '", key, "': ", kind, " config file ", path, " does not exist");
  }
  std::string available;
  for (const auto& n : named_configs_in(dir)) available += (available.empty() ? "" : ", ") + n;
  KVT_THROW(where, ": key '", key, "': no ", kind, " config named '", value, "' (", path,
            " does not exist; available: ", available.empty() ? "none" : available, ")");
}

}  // namespace kvtune

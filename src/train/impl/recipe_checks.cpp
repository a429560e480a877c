#include "train/impl/recipe_checks.h"
#include "common/path_checks.h"

#include <algorithm>
#include <filesystem>

namespace kvtune::impl {

void check_one_of(const std::string& where, const std::string& key, const std::string& value,
                  const std::vector<std::string>& names) {
  KVT_CHECK(std::find(names.begin(), names.end(), value) != names.end(), where, ": key '", key,
            "' is '", value, "', expected one of: ", join_names(names));
}

void check_bank_file(const std::string& where, const std::string& key, const std::string& path) {
  KVT_CHECK(is_file(path), where, ": key '", key, "' names '", path,
            "', which is not a file: give the path of a bank (.h5) written by kvtune, relative to "
            "the directory kvtune runs in");
}

}  // namespace kvtune::impl

// The recipe checks that validate_recipe and the methods share: every message names the key,
// what it holds and what is accepted.
#pragma once

#include <string>
#include <vector>

#include "common/check.h"
#include "common/names.h"

namespace kvtune::impl {

void check_one_of(const std::string& where, const std::string& key, const std::string& value,
                  const std::vector<std::string>& names);

template <typename T>
void check_positive(const std::string& where, const std::string& key, T value) {
  KVT_CHECK(value > 0, where, ": key '", key, "' must be > 0, got ", value);
}

template <typename T>
void check_non_negative(const std::string& where, const std::string& key, T value,
                        const char* zero_means) {
  KVT_CHECK(value >= 0, where, ": key '", key, "' must be >= 0 (0 = ", zero_means, "), got ",
            value);
}

// A bank file a recipe names (its content is checked against the model when the run starts).
void check_bank_file(const std::string& where, const std::string& key, const std::string& path);

}  // namespace kvtune::impl

// Reading small JSON description files (tokenizer.json) with errors that name the file.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvtune::detail {

// The JSON object in `path`; a missing file, bad JSON or a non-object is a kvtune::Error.
// `what` names the file's role in messages ("tokenizer file").
nlohmann::json read_json_object(const std::string& path, const std::string& what);

// A kvtune::Error naming the file and the key unless every key of `json` is one of `valid`.
void check_json_keys(const nlohmann::json& json, const std::vector<std::string>& valid,
                     const std::string& path);

// The integer at `key`, or a kvtune::Error naming the file and the key.
int64_t json_int(const nlohmann::json& json, const std::string& key, const std::string& path);

}  // namespace kvtune::detail

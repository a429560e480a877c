// UTF-8 checks for names and text that go into HDF5 strings and JSON.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kvtune {

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool valid_utf8(const std::string& s);

// `s` with every byte that is not part of well-formed UTF-8 written as \xHH: for messages.
std::string escape_invalid_utf8(const std::string& s);

// json.dump() that never throws on invalid UTF-8 (nlohmann's type_error.316): invalid bytes
// become U+FFFD. For reports and attributes built from file names a user gave.
std::string dump_json(const nlohmann::json& j, int indent = -1);

}  // namespace kvtune

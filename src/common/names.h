// Lists of names in messages: "byte, sentencepiece".
#pragma once

#include <string>
#include <vector>

namespace kvtune {

// The names joined by ", " ("" for none).
inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace kvtune

// Existence checks on paths a user gives, that never throw. std::filesystem's one-argument
// is_regular_file / exists / is_directory throw filesystem_error when the path cannot be
// examined (a name longer than the system allows, a component that is a file, no permission);
// that would reach the user as an internal error instead of the reader's own message. These
// answer false instead, so the caller's check reports the path (found by tests/fuzz/fuzz_recipe:
// a recipe's `model:` of 1000 bytes).
#pragma once

#include <filesystem>
#include <system_error>

namespace kvtune {

// A regular file (after symlinks) that can be examined.
inline bool is_file(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && !ec;
}

// A folder (after symlinks) that can be examined.
inline bool is_folder(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) && !ec;
}

// Anything at `path` (a file, a folder, a dangling name is not) that can be examined.
inline bool path_exists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec) && !ec;
}

}  // namespace kvtune

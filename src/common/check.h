// Check macros that throw kvtune::Error with context (faiss FAISS_THROW_IF_NOT_FMT style).
// Bad user input is an exception with a message a user can act on, never an abort.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace kvtune {

// The one exception type for errors a user can fix (bad file, bad recipe, bad argument).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace kvtune

// KVT_THROW("file ", path, ": dataset /keys is missing")
#define KVT_THROW(...) throw ::kvtune::Error(::kvtune::detail::concat(__VA_ARGS__))

// KVT_CHECK(cond, "what was expected, what was found, and the fix")
#define KVT_CHECK(cond, ...)  \
  do {                        \
    if (!(cond)) {            \
      KVT_THROW(__VA_ARGS__); \
    }                         \
  } while (0)

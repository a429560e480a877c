// How C++ errors reach Python. The torch dispatcher turns c10::ValueError into ValueError and
// any other std::exception into RuntimeError, with the message kept: a bad argument is a
// ValueError, anything else (a bad file, HDF5, faiss) a RuntimeError, and nothing aborts the
// interpreter.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include <c10/util/Exception.h>

#include "common/check.h"

namespace kvtune::python {

// Runs f(); a kvtune::Error it throws (the library's "you can fix this" error) becomes a
// ValueError. Use around calls whose every kvtune::Error is about the arguments.
template <typename F>
auto as_value_error(F&& f) -> decltype(f()) {
  try {
    return std::forward<F>(f)();
  } catch (const kvtune::Error& e) {
    throw c10::ValueError(c10::SourceLocation{__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                          e.what());
  }
}

// Throws a ValueError with the message when `cond` is false.
template <typename... Args>
void check_argument(bool cond, Args&&... args) {
  if (!cond)
    throw c10::ValueError(c10::SourceLocation{__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                          kvtune::detail::concat(std::forward<Args>(args)...));
}

}  // namespace kvtune::python

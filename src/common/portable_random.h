// Integer draws that are the same with every C++ standard library: std::mt19937_64's output is
// specified by the standard, std::uniform_int_distribution's mapping of it is not (libstdc++ and
// libc++ give different numbers), so data that must be identical everywhere uses these.
#pragma once

#include <cstdint>
#include <random>

namespace kvtune {

// Uniform in [0, bound), bound >= 1: rejection sampling of the engine's 64-bit output.
inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;  // a multiple of bound
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % bound;
}

// Uniform in [lo, hi], lo <= hi.
inline int64_t uniform_between(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(hi - lo) + 1));
}

}  // namespace kvtune

// The contiguous share of n items (the rows of a batch, of a bank) that one rank of a run holds:
// items [begin, begin + count); the first n % world_size ranks hold one item more. Callers check
// that every rank gets at least one (n >= world_size), with their own message.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kvtune {

struct RowShare {
  int64_t begin = 0;
  int64_t count = 0;
};

inline RowShare row_share(int64_t n, int rank, int world_size) {
  const int64_t base = n / world_size, extra = n % world_size;
  RowShare s;
  s.count = base + (rank < extra ? 1 : 0);
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  return s;
}

}  // namespace kvtune

#include "data/split.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

// splitmix64's finalizer: FNV-1a's high bits mix poorly on short keys that differ only in their
// last byte, and the unit value is read from the high bits.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

void check_fraction(double fraction) {
  // Written so that NaN fails too. 1 is excluded: nothing would be left to train on.
  KVT_CHECK(fraction >= 0.0 && fraction < 1.0, "held-out fraction ", fraction,
            " is outside [0, 1); use e.g. 0.1 to hold out a tenth of the headwords");
}

}  // namespace

uint64_t fnv1a_64(std::string_view bytes, uint64_t state) {
  for (char c : bytes) {
    state ^= static_cast<unsigned char>(c);
    state *= 0x100000001b3ull;
  }
  return state;
}

double headword_unit(const std::string& headword, uint64_t salt) {
  // The salt goes in as 8 little-endian bytes, so the result does not depend on endianness.
  char salt_bytes[8];
  for (int i = 0; i < 8; ++i) salt_bytes[i] = static_cast<char>((salt >> (8 * i)) & 0xff);
  uint64_t h = fnv1a_64(std::string_view(salt_bytes, 8));
  h = fnv1a_64(fold_headword(headword), h);
  // The top 53 bits, exactly representable in a double.
  return static_cast<double>(mix64(h) >> 11) * 0x1.0p-53;
}

bool is_held_out(const std::string& headword, double held_out_fraction, uint64_t salt) {
  check_fraction(held_out_fraction);
  return headword_unit(headword, salt) < held_out_fraction;
}

std::vector<size_t> sample_by_hash(const std::vector<std::string>& keys, size_t count,
                                   uint64_t salt) {
  std::vector<size_t> order(keys.size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (count >= keys.size()) return order;
  std::vector<double> u(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) u[i] = headword_unit(keys[i], salt);
  // Smallest hash first, ties by position: the same sample whatever the machine.
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                   [&](size_t a, size_t b) { return u[a] < u[b] || (u[a] == u[b] && a < b); });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

Split split_entries(const std::vector<TextEntry>& entries, double held_out_fraction,
                    uint64_t salt) {
  check_fraction(held_out_fraction);
  Split split;
  for (const auto& entry : entries) {
    if (headword_unit(entry.headword, salt) < held_out_fraction) {
      split.held_out.push_back(entry);
    } else {
      split.train.push_back(entry);
    }
  }
  return split;
}

}  // namespace kvtune

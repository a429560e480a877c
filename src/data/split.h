// Deterministic train / held-out split by headword.
//
// Whether an entry is held out depends only on its headword (case and spacing folded), the
// fraction and a salt, through a fixed hash: the same on every platform, compiler and run, and
// independent of the order or number of entries. Entries that share a headword (FOLDOC's "Actor"
// and "actor") always land on the same side, so a held-out fact is never trained on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/text_entry.h"

namespace kvtune {

// FNV-1a, 64-bit: a fixed, platform-independent hash (std::hash is neither).
uint64_t fnv1a_64(std::string_view bytes, uint64_t state = 0xcbf29ce484222325ull);

// A number in [0, 1) fixed by the folded headword and the salt; uniform over headwords.
double headword_unit(const std::string& headword, uint64_t salt = 0);

// headword_unit(headword, salt) < held_out_fraction. The fraction must be in [0, 1).
bool is_held_out(const std::string& headword, double held_out_fraction, uint64_t salt = 0);

// The positions of the `count` keys with the smallest headword_unit(key, salt) (ties by
// position), in increasing order: a uniform sample by key, the same on every machine, that keeps
// the input order. count >= keys.size() gives every position.
std::vector<size_t> sample_by_hash(const std::vector<std::string>& keys, size_t count,
                                   uint64_t salt);

struct Split {
  std::vector<TextEntry> train;
  std::vector<TextEntry> held_out;
};

// Splits `entries` with is_held_out, keeping their order on each side.
Split split_entries(const std::vector<TextEntry>& entries, double held_out_fraction,
                    uint64_t salt = 0);

}  // namespace kvtune

// One bank from several: what `kvtune bank merge` runs (policy: docs/banks.md, layout of the
// slot origins: docs/bank-format.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bank/bank.h"

namespace kvtune {

struct MergeInput {
  std::string file;  // as the user named it: recorded in the slot origins and in messages
  Bank bank;
};

struct MergeOptions {
  // Slots whose keys have cosine above this are merged into one; <= 0 merges nothing.
  double dedup_cosine = 0.995;
  std::string name = "merged";
};

struct MergeReport {
  int64_t sources = 0;
  int64_t slots_in = 0;
  int64_t slots_out = 0;
  int64_t merged_slots = 0;       // output slots made of two or more source slots
  int64_t duplicates_folded = 0;  // slots_in - slots_out
  int64_t usage_total = 0;        // kept: merging sums usage
};
nlohmann::json to_json(const MergeReport& report);

// Refuses, naming both files and the fix, inputs that disagree on key_dim, value_dim, score
// scale, model fingerprint or memory layer, or a file given twice. Then:
// 1. every source slot becomes a row; its origin is (file, bank name, slot id), or the origin
//    rows a merged input already records (origins stay flat: they always name original banks);
// 2. rows are put in a canonical order that depends only on their content: usage descending,
//    then key bits, then value bits, then origin;
// 3. near-duplicates are folded greedily in that order: each row not yet taken leads a group
//    and takes every later untaken row whose key has cosine > dedup_cosine with its own. A group
//    keeps the leader's key (the most used), the usage-weighted mean of the values (the plain
//    mean when no member was used), the summed usage, and every member's origin rows (the
//    leader's first);
// 4. groups are numbered 0.. in canonical order: the new slot ids.
// So the output does not depend on the order of the inputs.
Bank merge_banks(const std::vector<MergeInput>& inputs, const MergeOptions& options,
                 MergeReport* report = nullptr);

}  // namespace kvtune

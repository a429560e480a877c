// Patches (method sparse): new rows for some slots of a base bank, shipped like a domain bank.
// A patch is a bank file (the same layout and validation) with meta.kind = "patch", whose slot
// ids are the base bank's ids of the changed slots and whose keys and values are those slots'
// new rows; model_fingerprint and memory_layer name the base model and layer it belongs to
// (docs/bank-format.md "Patches", docs/banks.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bank/bank.h"

namespace kvtune {

// The rows `rows` ([M] int64, local row numbers of `tuned`) of a tuned base bank as a patch
// named `name`, for (fingerprint, layer). Usage is kept.
Bank make_patch(const Bank& tuned, const torch::Tensor& rows, const std::string& name,
                const std::string& fingerprint, int64_t layer, const std::string& provenance);

// Copies the patch's keys and values into the base bank's rows of the same slot ids. Refused
// (kvtune::Error naming `where`, nothing changed) when it is not a patch, the dims differ, or a
// slot id is not in the base bank. Returns whether any key changed (the index must be rebuilt).
bool apply_patch_rows(Bank& base, const Bank& patch, const std::string& where);

struct PatchMergeReport {
  int64_t patches = 0;
  int64_t slots_out = 0;
  int64_t conflicting_slots = 0;  // slots two or more patches changed
};
nlohmann::json to_json(const PatchMergeReport& report);

// One patch from several of the same base (fingerprint and layer must agree; files named in
// errors). A slot that one patch changed takes that patch's row; a slot that several changed
// takes the mean of their rows (keys renormalized to unit length) and the sum of their usage.
// Slots ascend by id.
Bank merge_patches(const std::vector<std::pair<std::string, Bank>>& patches,
                   const std::string& name, PatchMergeReport* report);

}  // namespace kvtune

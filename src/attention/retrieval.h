// Candidate search over several banks: each bank's index searched for its best k, the hits
// tagged with global ids (bank offset + row) and laid side by side.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"

namespace kvtune {

// q_unit [R, dk] (any float dtype; searched in float32). Returns int64 [R, C] with
// C = sum_b min(k, N_b): bank 0's candidates, then bank 1's, ...; -1 where a search found fewer.
torch::Tensor search_candidates(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                int64_t k);

// How many times search_candidates has run in this process (all threads): what tests use to
// check that a step searches once.
int64_t search_count();

// The bank of a global id and its row there: {bank, row}, or {-1, -1} for an invalid id.
std::pair<int, int64_t> locate_global_id(const std::vector<int64_t>& offsets, int64_t total,
                                         int64_t id);

}  // namespace kvtune

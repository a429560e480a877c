// Data parallelism over the ranks of a run (docs/distributed.md): each rank trains on its own
// contiguous share of every global batch, and after the backward pass the gradients are summed
// over ranks so that every rank takes the same optimizer step.
//   - Dense gradients: one all-reduce of all of them, flattened into one buffer.
//   - Bank-row gradients: exchanged as (row ids, rows), laid end to end in rank order and summed
//     per row in that order, so every rank computes the same sum bit for bit and a replicated
//     bank stays identical on every rank.
// Each rank scales its loss by its share of the batch (n_r / B), so the sum over ranks is the
// gradient of the global batch's mean loss, as in one process.
#pragma once

#include <cstdint>
#include <string>

#include "common/communicator.h"
#include "common/row_share.h"
#include "train/train_state.h"

namespace kvtune {

// This rank's rows of a global batch of `batch` rows (row_share). Throws when there are fewer
// rows than ranks (a rank would train on nothing).
RowShare batch_share(int64_t batch, int rank, int world_size);

// Sums the gradients of s.dense, s.log_scale and s.bank_params over ranks, in place. A parameter
// no rank gave a gradient keeps none (the optimizers skip it, as in one process). The shards of
// s.split_banks are left as they are: their gradients are whole already.
void sum_gradients(Communicator& c, TrainState& s);

// Refuses to start unless every rank holds the same trainable weights, resumes from the same
// step and runs the same recipe: a rank that read another checkpoint, base or recipe would
// otherwise train on silently. Names the first rank that differs. Shards of s.split_banks are
// each rank's own and not compared.
void check_ranks_agree(Communicator& c, const TrainState& s, int64_t first_step,
                       const std::string& recipe_text);

// After training: every rank must hold bit-identical weights, shards of split banks apart (the
// exchange above guarantees it). A difference is a bug, reported with the first rank that differs,
// not trained on.
void check_ranks_identical(Communicator& c, const TrainState& s, int64_t step);

}  // namespace kvtune

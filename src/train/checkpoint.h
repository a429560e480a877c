// Training checkpoints of a run folder: the step reached, every model parameter and buffer, the
// rows of the banks that train, the learned scale, the method's own state (which rows method
// sparse changed) and both optimizers' state, written
// atomically. `--resume` continues from one to the same weights as an uninterrupted run.
//
// Every rank calls both functions at the same steps.
// - Replicated state (no split bank): rank 0 alone writes checkpoint.pt; every rank reads it.
// - With split banks (TrainState::split_banks), each rank's shard is its own. Rank r > 0 writes
//   checkpoint.rank<r>.step<S>.pt, a whole checkpoint of its own state. Then, after a barrier,
//   rank 0 writes checkpoint.pt, which names the step and the world size. Only then does each
//   rank delete its files of other steps. A crash at any point leaves the last complete set:
//   checkpoint.pt names a step whose rank files all exist. Resuming needs the same world size.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "common/communicator.h"
#include "train/row_optimizer.h"
#include "train/train_state.h"

namespace kvtune {

void save_run_checkpoint(Communicator& comm, const std::string& out_dir, int64_t step,
                         TrainState& s, torch::optim::AdamW& dense_opt, RowOptimizer* row_opt);

// Restores what save_run_checkpoint wrote into `s` and the optimizers and returns its step, or
// returns 0 and changes nothing when out_dir has no checkpoint.pt. A file that cannot be read,
// that another recipe or another world size wrote, or a missing rank file is a kvtune::Error
// naming the fix.
int64_t load_run_checkpoint(Communicator& comm, const std::string& out_dir, TrainState& s,
                            torch::optim::AdamW& dense_opt, RowOptimizer* row_opt);

// checkpoint.pt of `out_dir`.
std::string checkpoint_path(const std::string& out_dir);
// Deletes every rank's checkpoint.rank<r>.step<S>.pt in `out_dir` (--overwrite).
void remove_rank_checkpoints(const std::string& out_dir);

}  // namespace kvtune

// Training checkpoints (checkpoint.pt in a run folder): the step reached, every model parameter
// and buffer, the rows of the banks that train, the learned scale and both optimizers' state.
// Written atomically; `--resume` continues from one to the same weights as an uninterrupted run.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "train/row_optimizer.h"
#include "train/train_state.h"

namespace kvtune {

void save_checkpoint(const std::string& path, int64_t step, TrainState& s,
                     torch::optim::AdamW& dense_opt, RowOptimizer* row_opt);

// Restores everything save_checkpoint wrote into `s` and the optimizers; returns the step.
// A file that cannot be read, or that another recipe wrote, is a kvtune::Error naming the fix.
int64_t load_checkpoint(const std::string& path, TrainState& s, torch::optim::AdamW& dense_opt,
                        RowOptimizer* row_opt);

}  // namespace kvtune

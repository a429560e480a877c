// The learning-rate schedule of every run: linear warm-up over optim.warmup_steps, then cosine
// decay to a tenth of the base rate at the last step.
#pragma once

#include <cstdint>

#include "train/recipe.h"

namespace kvtune {

// The rate at `step` (0-based) of `total` steps, for a base rate `base`.
double lr_at(const OptimConfig& optim, int64_t step, int64_t total, double base);

}  // namespace kvtune

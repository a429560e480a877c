#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace kvtune {

double lr_at(const OptimConfig& o, int64_t step, int64_t total, double base) {
  if (step < o.warmup_steps) return base * double(step + 1) / double(o.warmup_steps);
  const double progress =
      double(step - o.warmup_steps) / double(std::max<int64_t>(1, total - o.warmup_steps));
  return base * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

}  // namespace kvtune

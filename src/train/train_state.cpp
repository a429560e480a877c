#include "train/train_state.h"

namespace kvtune {

bool is_split_bank_param(const TrainState& s, const torch::Tensor& param) {
  for (const auto& bank : s.split_banks) {
    const auto& b = bank->bank();
    if (param.is_same(b.keys) || param.is_same(b.values)) return true;
  }
  return false;
}

}  // namespace kvtune

// Plain SGD for bank rows: row <- row - lr * grad for the rows that received gradient, no state
// (the optimizer of sparse memory fine-tuning, at large rates: docs/training.md).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "train/row_optimizer.h"

namespace kvtune {

class SparseRowSgd : public RowOptimizer {
 public:
  SparseRowSgd(std::vector<torch::Tensor> params, double lr);
  std::vector<torch::Tensor> step() override;
  void set_lr(double lr) override { lr_ = lr; }
  std::vector<torch::Tensor> state() const override { return {}; }
  void load_state(const std::vector<torch::Tensor>& state) override;

 private:
  double lr_;
};

}  // namespace kvtune

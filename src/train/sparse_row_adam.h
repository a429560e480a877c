// Adam for bank rows: only rows that received gradient are updated, each with its own step
// count (lazy Adam, like torch.optim.SparseAdam). The time of a step grows with the rows
// touched, not with the bank size N. State (m, v: [N, d]; steps: [N]) is allocated once.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "train/row_optimizer.h"

namespace kvtune {

struct SparseRowAdamOptions {
  double lr = 1e-2;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class SparseRowAdam : public RowOptimizer {
 public:
  // Each parameter is a [N, d] bank tensor whose .grad() is sparse COO over rows (dense grads
  // are accepted too: their non-zero rows count as touched).
  SparseRowAdam(std::vector<torch::Tensor> params, SparseRowAdamOptions options);

  // Updates the touched rows; returns, per parameter, the rows it touched (int64 [U]).
  std::vector<torch::Tensor> step() override;
  void set_lr(double lr) override { options_.lr = lr; }
  const SparseRowAdamOptions& options() const { return options_; }

  // State for checkpoints: m, v, steps of every parameter, in order.
  std::vector<torch::Tensor> state() const override;
  void load_state(const std::vector<torch::Tensor>& state) override;

 private:
  std::vector<torch::Tensor> m_, v_, steps_;
  SparseRowAdamOptions options_;
};

}  // namespace kvtune

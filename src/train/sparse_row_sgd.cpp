#include "train/sparse_row_sgd.h"

#include "common/check.h"

namespace kvtune {

SparseRowSgd::SparseRowSgd(std::vector<torch::Tensor> params, double lr)
    : RowOptimizer(std::move(params)), lr_(lr) {}

std::vector<torch::Tensor> SparseRowSgd::step() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> touched(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const RowGradient g = row_gradient(p);
    if (!g.rows.defined()) {
      touched[i] = torch::empty({0}, torch::kInt64);
      continue;
    }
    touched[i] = g.rows;
    if (g.rows.numel() > 0) p.index_add_(0, g.rows, g.grad, -lr_);
  }
  return touched;
}

void SparseRowSgd::load_state(const std::vector<torch::Tensor>& state) {
  KVT_CHECK(state.empty(), "SGD keeps no optimizer state but the checkpoint holds ", state.size(),
            " tensors (written with sparse.optimizer adam?)");
}

}  // namespace kvtune

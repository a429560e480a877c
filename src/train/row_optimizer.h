// Optimizers of bank rows, chosen by name (recipe key sparse.optimizer; method memory uses
// "adam"): each parameter is an [N, d] bank tensor whose gradient is sparse COO over rows (dense
// gradients are accepted: their non-zero rows count as touched), and a step changes only the
// rows that received gradient, so its cost grows with the rows touched, not with N.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kvtune {

class RowOptimizer {
 public:
  virtual ~RowOptimizer() = default;
  // Updates the touched rows; returns, per parameter, the rows it touched (int64 [U]).
  virtual std::vector<torch::Tensor> step() = 0;
  void zero_grad();
  virtual void set_lr(double lr) = 0;
  // State for checkpoints, in a fixed order (empty for a stateless optimizer).
  virtual std::vector<torch::Tensor> state() const = 0;
  virtual void load_state(const std::vector<torch::Tensor>& state) = 0;
  const std::vector<torch::Tensor>& params() const { return params_; }

 protected:
  explicit RowOptimizer(std::vector<torch::Tensor> params);
  std::vector<torch::Tensor> params_;
};

// The rows that received gradient and their gradient rows ([U] int64, [U, d]); undefined `rows`
// when the parameter has no gradient.
struct RowGradient {
  torch::Tensor rows;
  torch::Tensor grad;
};
RowGradient row_gradient(const torch::Tensor& param);

// "adam" (SparseRowAdam: lazy Adam, per-row step counts) or "sgd" (SparseRowSgd: plain SGD).
std::unique_ptr<RowOptimizer> make_row_optimizer(const std::string& name,
                                                 std::vector<torch::Tensor> params, double lr);
const std::vector<std::string>& row_optimizer_names();

}  // namespace kvtune

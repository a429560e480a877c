#include "train/row_optimizer.h"

#include "common/check.h"
#include "train/sparse_row_adam.h"
#include "train/sparse_row_sgd.h"

namespace kvtune {

RowOptimizer::RowOptimizer(std::vector<torch::Tensor> params) : params_(std::move(params)) {
  for (const auto& p : params_) KVT_CHECK(p.dim() == 2, "row optimizers take [N, d] bank tensors");
}

void RowOptimizer::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

RowGradient row_gradient(const torch::Tensor& param) {
  const auto& grad = param.grad();
  if (!grad.defined()) return {};
  if (grad.is_sparse()) {
    const auto c = grad.coalesce();
    return {c.indices()[0], c.values()};
  }
  const auto rows = torch::nonzero(grad.abs().sum(1)).reshape({-1});
  return {rows, grad.index_select(0, rows)};
}

const std::vector<std::string>& row_optimizer_names() {
  static const std::vector<std::string> names = {"adam", "sgd"};
  return names;
}

std::unique_ptr<RowOptimizer> make_row_optimizer(const std::string& name,
                                                 std::vector<torch::Tensor> params, double lr) {
  if (name == "adam") {
    SparseRowAdamOptions o;
    o.lr = lr;
    return std::make_unique<SparseRowAdam>(std::move(params), o);
  }
  if (name == "sgd") return std::make_unique<SparseRowSgd>(std::move(params), lr);
  KVT_THROW("unknown row optimizer '", name, "': choose adam or sgd");
}

}  // namespace kvtune

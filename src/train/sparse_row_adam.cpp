#include "train/sparse_row_adam.h"

#include "common/check.h"

namespace kvtune {

SparseRowAdam::SparseRowAdam(std::vector<torch::Tensor> params, SparseRowAdamOptions options)
    : RowOptimizer(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous).set_requires_grad(false));
    v_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous).set_requires_grad(false));
    steps_.push_back(torch::zeros({p.size(0)}, torch::kInt64));
  }
}

std::vector<torch::Tensor> SparseRowAdam::step() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> touched(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const RowGradient rg = row_gradient(p);
    if (!rg.rows.defined()) {
      touched[i] = torch::empty({0}, torch::kInt64);
      continue;
    }
    const torch::Tensor& rows = rg.rows;
    const torch::Tensor& g = rg.grad;
    touched[i] = rows;
    if (rows.numel() == 0) continue;
    const auto t = steps_[i].index_select(0, rows) + 1;
    steps_[i].index_copy_(0, rows, t);
    auto m = m_[i].index_select(0, rows).mul_(options_.beta1).add_(g, 1 - options_.beta1);
    auto v = v_[i].index_select(0, rows).mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    m_[i].index_copy_(0, rows, m);
    v_[i].index_copy_(0, rows, v);
    const auto tf = t.to(p.scalar_type()).unsqueeze(1);
    const auto bc1 = 1 - torch::pow(options_.beta1, tf);
    const auto bc2 = 1 - torch::pow(options_.beta2, tf);
    const auto update = options_.lr * (m / bc1) / ((v / bc2).sqrt() + options_.eps);
    p.index_add_(0, rows, -update);
  }
  return touched;
}

std::vector<torch::Tensor> SparseRowAdam::state() const {
  std::vector<torch::Tensor> s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.push_back(m_[i]);
    s.push_back(v_[i]);
    s.push_back(steps_[i]);
  }
  return s;
}

void SparseRowAdam::load_state(const std::vector<torch::Tensor>& state) {
  KVT_CHECK(state.size() == 3 * params_.size(), "optimizer state has ", state.size(),
            " tensors, expected ", 3 * params_.size(), " (checkpoint from another run?)");
  for (size_t i = 0; i < params_.size(); ++i) {
    KVT_CHECK(state[3 * i].sizes() == m_[i].sizes(), "optimizer state shape mismatch for bank ", i,
              " (checkpoint from another run?)");
    m_[i].copy_(state[3 * i]);
    v_[i].copy_(state[3 * i + 1]);
    steps_[i].copy_(state[3 * i + 2]);
  }
}

}  // namespace kvtune

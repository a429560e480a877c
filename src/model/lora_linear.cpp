#include "model/lora_linear.h"

#include <cmath>

#include "common/check.h"

namespace kvtune {

LoraLinearImpl::LoraLinearImpl(torch::nn::Linear base, int64_t rank, double alpha)
    : base_(std::move(base)), rank_(rank), scale_(alpha / static_cast<double>(rank)) {
  KVT_CHECK(!base_.is_empty(), "LoRA: cannot wrap an empty Linear");
  KVT_CHECK(rank > 0, "LoRA: rank must be positive, got ", rank, " (set lora.rank)");
  KVT_CHECK(std::isfinite(alpha) && alpha > 0, "LoRA: alpha must be positive, got ", alpha,
            " (set lora.alpha)");
  const auto& w = base_->weight;
  const int64_t out = w.size(0), in = w.size(1);
  KVT_CHECK(rank <= std::min(in, out), "LoRA: rank ", rank, " exceeds the layer's size [", out,
            ", ", in, "]: choose rank <= ", std::min(in, out));
  const auto opts = w.options().requires_grad(false);
  lora_a = register_parameter("lora_a", torch::empty({rank, in}, opts));
  lora_b = register_parameter("lora_b", torch::zeros({out, rank}, opts));
  {
    torch::NoGradGuard no_grad;
    // Kaiming-uniform with a = sqrt(5): nn.Linear's default init, as in the LoRA reference code.
    torch::nn::init::kaiming_uniform_(lora_a, std::sqrt(5.0));
  }
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  return base_->forward(x) + scale_ * F::linear(F::linear(x, lora_a), lora_b);
}

torch::Tensor LoraLinearImpl::merged_weight() const {
  torch::NoGradGuard no_grad;
  return base_->weight + scale_ * lora_b.matmul(lora_a);
}

AdaptableLinear::AdaptableLinear(torch::nn::Module& owner, std::string name,
                                 const torch::nn::LinearOptions& options)
    : owner_(&owner), name_(std::move(name)) {
  linear_ = owner_->register_module(name_, torch::nn::Linear(options));
}

LoraLinear AdaptableLinear::add_lora(int64_t rank, double alpha) {
  KVT_CHECK(owner_ != nullptr, "LoRA: the linear slot is empty");
  KVT_CHECK(!lora_, "LoRA: layer '", name_, "' already has an adapter (apply LoRA once)");
  lora_ = owner_->register_module(name_ + "_lora", LoraLinear(linear_, rank, alpha));
  return lora_;
}

void AdaptableLinear::merge_lora() {
  if (!lora_) return;
  {
    torch::NoGradGuard no_grad;
    linear_->weight.copy_(lora_->merged_weight());
  }
  owner_->unregister_module(name_ + "_lora");
  lora_ = nullptr;
}

}  // namespace kvtune

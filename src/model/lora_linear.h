// LoRA (Hu et al., 2021) on one linear layer, and the linear "slot" a host module holds so that
// LoRA can wrap its layers in place without renaming their weights.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace kvtune {

// y = W x + b + (alpha / rank) B A x, with W, b the wrapped Linear's (frozen here), A [rank, in]
// kaiming-uniform and B [out, rank] zero, so a fresh adapter leaves the output unchanged.
// Only A and B are registered ("lora_a", "lora_b"): the wrapped Linear stays registered where it
// was, so its weights keep their names and appear once in the model's parameters.
class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(torch::nn::Linear base, int64_t rank, double alpha);

  torch::Tensor forward(const torch::Tensor& x);
  // W + (alpha / rank) B A: the weight of a plain Linear computing the same function.
  torch::Tensor merged_weight() const;

  const torch::nn::Linear& base() const { return base_; }
  int64_t rank() const { return rank_; }
  double scale() const { return scale_; }

  torch::Tensor lora_a;  // [rank, in]
  torch::Tensor lora_b;  // [out, rank]

 private:
  torch::nn::Linear base_;
  int64_t rank_;
  double scale_;
};
TORCH_MODULE(LoraLinear);

// A Linear registered in `owner` under `name` that LoRA can wrap: forward() goes through the
// adapter once add_lora() registered one in `owner` as "<name>_lora". Lives inside `owner`.
class AdaptableLinear {
 public:
  AdaptableLinear() = default;
  AdaptableLinear(torch::nn::Module& owner, std::string name,
                  const torch::nn::LinearOptions& options);

  torch::Tensor forward(const torch::Tensor& x) {
    return lora_ ? lora_->forward(x) : linear_->forward(x);
  }

  LoraLinear add_lora(int64_t rank, double alpha);
  // Folds the adapter into the Linear's weight (W += (alpha / rank) B A) and removes it.
  void merge_lora();

  const std::string& name() const { return name_; }
  const torch::nn::Linear& linear() const { return linear_; }
  const LoraLinear& lora() const { return lora_; }

 private:
  torch::nn::Module* owner_ = nullptr;
  std::string name_;
  torch::nn::Linear linear_{nullptr};
  LoraLinear lora_{nullptr};
};

}  // namespace kvtune

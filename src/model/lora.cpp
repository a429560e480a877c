#include "model/lora.h"

#include "common/check.h"

namespace kvtune {

std::vector<torch::Tensor> apply_lora(TransformerLM& model, int64_t rank, double alpha) {
  KVT_CHECK(!has_lora(model), "apply_lora: the model already has LoRA adapters (apply it once)");
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  std::vector<torch::Tensor> adapters;
  for (TransformerBlock block : model->blocks()) {
    for (auto* slot : block->linears()) {
      const LoraLinear lora = slot->add_lora(rank, alpha);
      adapters.push_back(lora->lora_a);
      adapters.push_back(lora->lora_b);
    }
  }
  return adapters;
}

bool has_lora(const TransformerLM& model) {
  for (TransformerBlock block : model->blocks()) {
    for (auto* slot : block->linears()) {
      if (slot->lora()) return true;
    }
  }
  return false;
}

void merge_lora(TransformerLM& model) {
  for (TransformerBlock block : model->blocks()) {
    for (auto* slot : block->linears()) slot->merge_lora();
  }
}

}  // namespace kvtune

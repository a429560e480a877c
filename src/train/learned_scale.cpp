#include "train/learned_scale.h"

#include <cmath>

#include "model/model_io.h"

namespace kvtune {

double current_scale(TransformerLM& model) {
  const auto layers = model->memory_layers();
  if (layers.empty()) return 0;
  const auto& o = layers.front()->options();
  if (layers.front()->learned_log_scale().defined())
    return std::exp(layers.front()->learned_log_scale().item<double>());
  return o.attention.scale > 0 ? o.attention.scale : std::sqrt(static_cast<double>(o.key_dim));
}

void attach_learned_scale(TrainState& s, const Recipe& r) {
  if (!r.attention.learn_scale || s.model->memory_layers().empty()) return;
  const auto dtype = s.model->memory_layers().front()->query->weight.scalar_type();
  s.log_scale = torch::tensor(std::log(current_scale(s.model)), torch::TensorOptions(dtype))
                    .set_requires_grad(true);
  for (auto& layer : s.model->memory_layers()) layer->set_learned_log_scale(s.log_scale);
}

double fold_learned_scale(TrainState& s, ModelConfig& config) {
  const double c = current_scale(s.model);
  if (!s.log_scale.defined()) return c;
  s.model->set_memory_scale(c);
  // The scale is part of the model's config, hence of its fingerprint: domain banks made for
  // the model before now belong to the model with the learned scale.
  const std::string fingerprint = model_fingerprint(s.model);
  for (auto& layer : s.model->memory_layers()) {
    layer->set_learned_log_scale(torch::Tensor());
    for (auto& bank : layer->banks()) {
      auto& meta = bank->mutable_bank().meta;
      meta.score_scale = c;
      if (!meta.model_fingerprint.empty()) meta.model_fingerprint = fingerprint;
    }
  }
  config.memory.attention.scale = c;
  return c;
}

}  // namespace kvtune

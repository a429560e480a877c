// attention.learn_scale: one trainable log c shared by the memory layers, trained with the bank
// rows' rate and no weight decay, then folded into the saved model as memory.scale.
#pragma once

#include "model/model_config.h"
#include "model/transformer.h"
#include "train/recipe.h"
#include "train/train_state.h"

namespace kvtune {

// The score scale the memory layers use now (the learned one when set, else options.scale, 0
// meaning sqrt(key_dim)); 0 for a model without memory layers.
double current_scale(TransformerLM& model);

// When the recipe asks for it: a trainable log c, from the current scale, on every memory layer
// (s.log_scale).
void attach_learned_scale(TrainState& s, const Recipe& r);

// After training: the learned scale becomes the layers' fixed scale, the saved model's
// memory.scale and its banks' score_scale. Returns it (the unchanged scale when not learned).
double fold_learned_scale(TrainState& s, ModelConfig& config);

}  // namespace kvtune

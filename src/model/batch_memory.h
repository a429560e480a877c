// What one batch of the model costs in memory, checked before anything is allocated: a batch
// size of 1e8 is refused with the size and the machine's memory instead of an allocation
// failure deep in libtorch (or a swap storm).
#pragma once

#include <cstdint>
#include <string>

#include "model/model_config.h"

namespace kvtune {

// A lower bound on the bytes of activations a training step of `batch` sequences of `seq_len`
// tokens keeps for backward (float32): per token and layer the residual stream, LayerNorm
// outputs, q/k/v, the FFN hidden layer and the attention probabilities, plus the logits and
// their gradient. -1 when the product overflows int64.
int64_t batch_activation_bytes(const ModelConfig& config, int64_t batch, int64_t seq_len);

// Throws kvtune::Error naming `what` (e.g. "key 'train.batch_size' = 100000000") when that lower
// bound exceeds the machine's physical memory.
void check_batch_fits(const ModelConfig& config, int64_t batch, int64_t seq_len,
                      const std::string& what, const std::string& fix);

}  // namespace kvtune

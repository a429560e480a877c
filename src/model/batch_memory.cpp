#include "model/batch_memory.h"

#include "common/resources.h"

namespace kvtune {

int64_t batch_activation_bytes(const ModelConfig& c, int64_t batch, int64_t seq_len) {
  // Per token: logits and their gradient, then per layer 8 d_model-wide tensors (residual,
  // two LayerNorms, q, k, v, attention output, FFN output), the FFN hidden layer before and
  // after GELU, and one row of attention probabilities per head.
  int64_t per_layer = checked_mul(8, c.d_model);
  per_layer = per_layer < 0 ? -1 : per_layer + 2 * c.d_ff;
  const int64_t probs = checked_mul(c.n_heads, seq_len);
  per_layer = (per_layer < 0 || probs < 0) ? -1 : per_layer + probs;
  const int64_t layers = checked_mul(per_layer, c.n_layers);
  const int64_t per_token = layers < 0 ? -1 : layers + 2 * c.vocab_size;
  const int64_t tokens = checked_mul(batch, seq_len);
  return checked_mul(checked_mul(per_token, tokens), 4);
}

void check_batch_fits(const ModelConfig& config, int64_t batch, int64_t seq_len,
                      const std::string& what, const std::string& fix) {
  check_fits_in_memory(batch_activation_bytes(config, batch, seq_len),
                       what + " (" + std::to_string(batch) + " sequences of " +
                           std::to_string(seq_len) + " tokens, model '" + config.name + "')",
                       fix);
}

}  // namespace kvtune

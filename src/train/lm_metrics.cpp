#include "train/lm_metrics.h"

namespace kvtune {

LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const int64_t available = (data.num_eval_windows() + batch_size - 1) / batch_size;
  const int64_t n = batches > 0 ? std::min(batches, available) : available;
  double loss_sum = 0;
  int64_t correct = 0, tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto batch = data.eval_batch(i, batch_size);
    const auto inputs = batch.narrow(1, 0, batch.size(1) - 1);
    const auto targets = batch.narrow(1, 1, batch.size(1) - 1).reshape({-1});
    const auto logits = logits_fn(inputs);
    const auto flat = logits.reshape({-1, logits.size(-1)});
    loss_sum +=
        torch::nn::functional::cross_entropy(
            flat, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
    correct += (flat.argmax(-1) == targets).sum().item<int64_t>();
    tokens += targets.numel();
  }
  LmMetrics m;
  m.tokens = tokens;
  if (tokens > 0) {
    m.loss = loss_sum / double(tokens);
    m.token_accuracy = double(correct) / double(tokens);
  }
  return m;
}

}  // namespace kvtune

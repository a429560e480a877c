#include "train/lm_metrics.h"

#include <cmath>

#include "common/check.h"

namespace kvtune {

LmCounts& LmCounts::operator+=(const LmCounts& o) {
  nats += o.nats;
  correct += o.correct;
  tokens += o.tokens;
  bytes += o.bytes;
  return *this;
}

torch::Tensor token_byte_lengths(const Tokenizer& tokenizer) {
  const int64_t v = tokenizer.vocab_size();
  auto lengths = torch::empty({v}, torch::kInt64);
  auto* out = lengths.data_ptr<int64_t>();
  for (int64_t id = 0; id < v; ++id) out[id] = static_cast<int64_t>(tokenizer.decode({id}).size());
  return lengths;
}

LmCounts count_predictions(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& token_bytes) {
  KVT_CHECK(logits.dim() == 2 && targets.dim() == 1 && logits.size(0) == targets.size(0),
            "count_predictions: logits [N, V] and targets [N] expected, got ", logits.sizes(),
            " and ", targets.sizes());
  KVT_CHECK(token_bytes.dim() == 1 && token_bytes.size(0) == logits.size(1),
            "count_predictions: token_bytes has ", token_bytes.numel(),
            " entries for a vocabulary of ", logits.size(1));
  const auto t = targets.to(torch::kInt64);
  LmCounts c;
  c.nats = torch::nn::functional::cross_entropy(
               logits.to(torch::kFloat64), t,
               torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
               .item<double>();
  c.correct = (logits.argmax(-1) == t).sum().item<int64_t>();
  c.tokens = t.numel();
  c.bytes = token_bytes.to(t.device()).index_select(0, t).sum().item<int64_t>();
  return c;
}

LmMetrics metrics_from_counts(const LmCounts& counts, int64_t sequences) {
  LmMetrics m;
  m.tokens = counts.tokens;
  m.bytes = counts.bytes;
  m.sequences = sequences;
  if (counts.tokens > 0) {
    m.loss = counts.nats / double(counts.tokens);
    m.token_accuracy = double(counts.correct) / double(counts.tokens);
  }
  if (counts.bytes > 0) m.bits_per_byte = counts.nats / std::log(2.0) / double(counts.bytes);
  return m;
}

nlohmann::json to_json(const LmMetrics& m) {
  return {{"token_accuracy", m.token_accuracy},
          {"loss", m.loss},
          {"bits_per_byte", m.bits_per_byte},
          {"examples", m.sequences},
          {"tokens", m.tokens},
          {"bytes", m.bytes}};
}

LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size,
                      const torch::Tensor& token_bytes) {
  torch::NoGradGuard no_grad;
  const int64_t available = (data.num_eval_windows() + batch_size - 1) / batch_size;
  const int64_t n = batches > 0 ? std::min(batches, available) : available;
  LmCounts total;
  int64_t sequences = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto batch = data.eval_batch(i, batch_size);
    const auto inputs = batch.narrow(1, 0, batch.size(1) - 1);
    const auto targets = batch.narrow(1, 1, batch.size(1) - 1).reshape({-1});
    const auto logits = logits_fn(inputs);
    total += count_predictions(logits.reshape({-1, logits.size(-1)}), targets, token_bytes);
    sequences += batch.size(0);
  }
  return metrics_from_counts(total, sequences);
}

}  // namespace kvtune

#include "eval/bank_usage.h"

#include <algorithm>

#include "common/check.h"
#include "data/corpus.h"
#include "data/text_data.h"

namespace kvtune {

UsageCount count_bank_usage(TransformerLM& model, const Tokenizer& tokenizer,
                            const UsageCountRequest& request) {
  KVT_CHECK(!request.sets.empty(), "no text to count usage on: give --count-usage NAME|PATH");
  KVT_CHECK(request.batches >= 0 && request.batch_size >= 1,
            "usage counting: batches must be >= 0 and batch size >= 1");
  KVT_CHECK(request.data.seq_len >= 2 && request.data.seq_len <= model->config().max_seq_len,
            "sequence length ", request.data.seq_len, " must be in [2, ",
            model->config().max_seq_len, "] (the model's max_seq_len)");
  for (const auto& set : request.sets) check_corpus_available(set, "--count-usage");
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  auto layers = model->memory_layers();
  for (auto& layer : layers) layer->set_track_usage(true);
  UsageCount count;
  try {
    for (const auto& set : request.sets) {
      const auto split = load_split({set}, request.data, tokenizer);
      const LmDataset& data = *split.train;
      const int64_t windows = data.num_eval_windows();
      KVT_CHECK(windows > 0, "set '", set, "' has no training text under held-out fraction ",
                request.data.held_out_fraction, ": use a larger corpus");
      const int64_t available = (windows + request.batch_size - 1) / request.batch_size;
      const int64_t batches =
          request.batches == 0 ? available : std::min(request.batches, available);
      for (int64_t b = 0; b < batches; ++b) {
        const auto batch = data.eval_batch(b, request.batch_size);
        const auto inputs = batch.slice(1, 0, batch.size(1) - 1);
        model->forward(inputs);
        count.sequences += inputs.size(0);
        count.tokens += inputs.numel();
      }
    }
  } catch (...) {
    for (auto& layer : layers) layer->set_track_usage(false);
    throw;
  }
  for (auto& layer : layers) layer->set_track_usage(false);
  if (was_training) model->train();
  return count;
}

}  // namespace kvtune

#include "model/generate.h"

#include <algorithm>

#include "common/check.h"

namespace kvtune {

std::vector<std::vector<int64_t>> greedy_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options) {
  KVT_CHECK(options.max_new_tokens >= 0 && options.batch_size > 0,
            "greedy_continue: max_new_tokens must be >= 0 and batch_size > 0");
  const int64_t max_len = model->config().max_seq_len;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::vector<std::vector<int64_t>> out(prompts.size());
  const int64_t n = static_cast<int64_t>(prompts.size());
  for (int64_t first = 0; first < n; first += options.batch_size) {
    const int64_t rows = std::min(options.batch_size, n - first);
    std::vector<int64_t> length(rows);
    int64_t longest = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const auto& p = prompts[first + r];
      KVT_CHECK(!p.empty(), "greedy_continue: prompt ", first + r, " is empty");
      KVT_CHECK(static_cast<int64_t>(p.size()) + options.max_new_tokens <= max_len,
                "greedy_continue: prompt ", first + r, " has ", p.size(), " tokens; with ",
                options.max_new_tokens, " new ones it exceeds the model's max_seq_len ", max_len);
      length[r] = static_cast<int64_t>(p.size());
      longest = std::max(longest, length[r]);
    }
    auto tokens =
        torch::full({rows, longest + options.max_new_tokens}, options.pad_id, torch::kInt64);
    auto acc = tokens.accessor<int64_t, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      const auto& p = prompts[first + r];
      for (int64_t t = 0; t < length[r]; ++t) acc[r][t] = p[t];
    }
    std::vector<bool> done(rows, false);
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      int64_t width = 0;
      for (int64_t r = 0; r < rows; ++r) {
        if (!done[r]) width = std::max(width, length[r]);
      }
      if (width == 0) break;
      const auto logits = model->forward(tokens.narrow(1, 0, width));
      const auto positions = torch::tensor(length, torch::kInt64).clamp_max(width).sub(1);
      const auto next = logits.index({torch::arange(rows), positions}).argmax(-1).contiguous();
      const auto* next_ids = next.data_ptr<int64_t>();
      for (int64_t r = 0; r < rows; ++r) {
        if (done[r]) continue;
        if (next_ids[r] == options.eos_id) {
          done[r] = true;
          continue;
        }
        out[first + r].push_back(next_ids[r]);
        acc[r][length[r]] = next_ids[r];
        ++length[r];
      }
    }
  }
  if (was_training) model->train();
  return out;
}

}  // namespace kvtune

#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "common/check.h"

namespace kvtune {

namespace {

// Next ids of a batch: last_logits [rows, V] at each row's last position, for the rows of the
// batch that starts at prompt `first`; rows marked skip are ignored (their entry is unused).
using PickFn = std::function<std::vector<int64_t>(const torch::Tensor& last_logits,
                                                  const std::vector<bool>& skip, int64_t first)>;

// Batched incremental decoding. A batch reads its shortest prompt's length at once, then one
// position per step for every row: a row still inside its prompt reads its next prompt token, a
// row past it reads the token it was given at the step before. Self-attention keys and values are
// cached (KvCache), so each step costs one position per row.
std::vector<std::vector<int64_t>> continue_prompts(TransformerLM& model,
                                                   const std::vector<std::vector<int64_t>>& prompts,
                                                   const GenerateOptions& options,
                                                   const PickFn& pick) {
  KVT_CHECK(options.max_new_tokens >= 0 && options.batch_size > 0,
            "generate: max_new_tokens must be >= 0 and batch_size > 0");
  const int64_t max_len = model->config().max_seq_len;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    KVT_CHECK(!p.empty(), "generate: prompt ", i, " is empty");
    KVT_CHECK(static_cast<int64_t>(p.size()) + options.max_new_tokens <= max_len,
              "generate: prompt ", i, " has ", p.size(), " tokens; with ", options.max_new_tokens,
              " new ones it exceeds the model's max_seq_len ", max_len,
              " (ask for fewer new tokens or shorten the prompt)");
  }
  std::vector<std::vector<int64_t>> out(prompts.size());
  if (options.max_new_tokens == 0) return out;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = static_cast<int64_t>(prompts.size());
  for (int64_t first = 0; first < n; first += options.batch_size) {
    const int64_t rows = std::min(options.batch_size, n - first);
    std::vector<int64_t> length(rows);  // tokens each row holds: prompt, then what it was given
    int64_t shortest = max_len, longest = 0;
    for (int64_t r = 0; r < rows; ++r) {
      length[r] = static_cast<int64_t>(prompts[first + r].size());
      shortest = std::min(shortest, length[r]);
      longest = std::max(longest, length[r]);
    }
    auto tokens =
        torch::full({rows, longest + options.max_new_tokens}, options.pad_id, torch::kInt64);
    auto acc = tokens.accessor<int64_t, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      const auto& p = prompts[first + r];
      for (int64_t t = 0; t < length[r]; ++t) acc[r][t] = p[t];
    }
    KvCache cache;
    auto logits = model->forward_cached(tokens.narrow(1, 0, shortest), cache);
    std::vector<bool> done(rows, false), skip(rows);
    for (int64_t pos = shortest;; ++pos) {
      // logits[:, -1] predicts position pos: rows whose sequence ends at pos pick a token there.
      bool picking = false;
      for (int64_t r = 0; r < rows; ++r) {
        skip[r] = done[r] || length[r] != pos;
        picking = picking || !skip[r];
      }
      if (picking) {
        const auto next_ids = pick(logits.select(1, logits.size(1) - 1), skip, first);
        for (int64_t r = 0; r < rows; ++r) {
          if (skip[r]) continue;
          auto& o = out[first + r];
          if (next_ids[r] == options.eos_id) {
            done[r] = true;
            continue;
          }
          o.push_back(next_ids[r]);
          acc[r][length[r]++] = next_ids[r];
          if (static_cast<int64_t>(o.size()) == options.max_new_tokens) done[r] = true;
        }
      }
      if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
      // Every row not done holds a token at pos (pos < length[r] <= max_len); done rows read
      // whatever is there, which no row that is still going ever sees.
      logits = model->forward_cached(tokens.narrow(1, pos, 1), cache);
    }
  }
  if (was_training) model->train();
  return out;
}

}  // namespace

std::vector<std::vector<int64_t>> greedy_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options) {
  return continue_prompts(model, prompts, options,
                          [](const torch::Tensor& last_logits, const std::vector<bool>&, int64_t) {
                            const auto next = last_logits.argmax(-1).contiguous();
                            const auto* ids = next.data_ptr<int64_t>();
                            return std::vector<int64_t>(ids, ids + next.numel());
                          });
}

std::vector<std::vector<int64_t>> sample_continue(TransformerLM& model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerateOptions& options,
                                                  const SamplingOptions& sampling) {
  KVT_CHECK(std::isfinite(sampling.temperature) && sampling.temperature >= 0,
            "generate: temperature must be >= 0 (0 = greedy), got ", sampling.temperature);
  KVT_CHECK(sampling.top_k >= 0, "generate: top-k must be >= 0 (0 = every token), got ",
            sampling.top_k);
  if (sampling.temperature == 0.0) return greedy_continue(model, prompts, options);
  // One generator per prompt, seeded with (seed, prompt number): a prompt's continuation does
  // not depend on the batch it runs in or on the other prompts.
  std::vector<std::mt19937_64> rngs;
  rngs.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::seed_seq seq{static_cast<uint32_t>(sampling.seed),
                      static_cast<uint32_t>(sampling.seed >> 32), static_cast<uint32_t>(i),
                      static_cast<uint32_t>(uint64_t(i) >> 32)};
    rngs.emplace_back(seq);
  }
  return continue_prompts(
      model, prompts, options,
      [&](const torch::Tensor& last_logits, const std::vector<bool>& skip, int64_t first) {
        std::vector<int64_t> ids(skip.size(), -1);
        for (size_t r = 0; r < skip.size(); ++r) {
          if (!skip[r]) ids[r] = sample_next_token(last_logits[r], sampling, rngs[first + r]);
        }
        return ids;
      });
}

int64_t sample_next_token(const torch::Tensor& logits, const SamplingOptions& sampling,
                          std::mt19937_64& rng) {
  KVT_CHECK(logits.dim() == 1 && logits.numel() > 0, "sample_next_token: logits must be [V]");
  KVT_CHECK(sampling.temperature > 0 && std::isfinite(sampling.temperature),
            "sample_next_token: temperature must be > 0, got ", sampling.temperature);
  const auto l64 = logits.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double* l = l64.data_ptr<double>();
  const int64_t v = l64.numel();
  std::vector<int64_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  const int64_t keep = sampling.top_k > 0 ? std::min(sampling.top_k, v) : v;
  // Largest first, ties to the smaller id: the cut at top_k is deterministic.
  std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                    [l](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  const double top = l[order[0]];
  KVT_CHECK(std::isfinite(top), "sample_next_token: the largest logit is ", top,
            ", expected a finite value");
  std::vector<double> cumulative(keep);
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    total += std::exp((l[order[i]] - top) / sampling.temperature);
    cumulative[i] = total;
  }
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng) * total;
  const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  const int64_t i = std::min<int64_t>(it - cumulative.begin(), keep - 1);
  return order[i];
}

}  // namespace kvtune

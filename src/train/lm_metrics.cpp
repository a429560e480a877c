#include "train/lm_metrics.h"

#include <cmath>

#include "common/check.h"

namespace kvtune {

LmCounts& LmCounts::operator+=(const LmCounts& o) {
  nats += o.nats;
  correct += o.correct;
  tokens += o.tokens;
  bytes += o.bytes;
  words += o.words;
  words_correct += o.words_correct;
  return *this;
}

TokenTable token_table(const Tokenizer& tokenizer) {
  const int64_t v = tokenizer.vocab_size();
  TokenTable table;
  table.byte_lengths = torch::empty({v}, torch::kInt64);
  table.texts.reserve(static_cast<size_t>(v));
  auto* out = table.byte_lengths.data_ptr<int64_t>();
  for (int64_t id = 0; id < v; ++id) {
    table.texts.push_back(tokenizer.decode({id}));
    out[id] = static_cast<int64_t>(table.texts.back().size());
  }
  return table;
}

torch::Tensor token_byte_lengths(const Tokenizer& tokenizer) {
  return token_table(tokenizer).byte_lengths;
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace

LmCounts count_words(int64_t first_input, const torch::Tensor& targets,
                     const torch::Tensor& predictions, const std::vector<std::string>& texts) {
  KVT_CHECK(targets.dim() == 1 && predictions.sizes() == targets.sizes(),
            "count_words: targets and predictions [T] expected, got ", targets.sizes(), " and ",
            predictions.sizes());
  const auto t = targets.to(torch::kCPU, torch::kInt64).contiguous();
  const auto p = predictions.to(torch::kCPU, torch::kInt64).contiguous();
  const auto* tp = t.data_ptr<int64_t>();
  const auto* pp = p.data_ptr<int64_t>();
  const auto text_of = [&](int64_t id) -> const std::string& {
    KVT_CHECK(id >= 0 && static_cast<size_t>(id) < texts.size(), "count_words: token id ", id,
              " is outside the table of ", texts.size());
    return texts[static_cast<size_t>(id)];
  };
  LmCounts c;
  // The word in progress: whether one is open, whether it began inside the window, whether
  // every token so far was right.
  const std::string& before = text_of(first_input);
  bool open = !before.empty() && !is_space(before.back());
  bool counted = false;
  bool right = true;
  const auto close = [&] {
    if (open && counted) {
      ++c.words;
      c.words_correct += right ? 1 : 0;
    }
    open = false;
  };
  for (int64_t i = 0; i < t.numel(); ++i) {
    const std::string& text = text_of(tp[i]);
    const bool hit = pp[i] == tp[i];
    if (text.empty()) close();  // a special token ends a word
    for (char ch : text) {
      if (is_space(ch)) {
        close();
        continue;
      }
      if (!open) {
        open = true;
        counted = true;
        right = true;
      }
      right = right && hit;
    }
  }
  return c;  // a word still open at the end may go on past the window: not counted
}

LmCounts count_predictions(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& token_bytes, const torch::Tensor& predictions) {
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
  c.correct =
      ((predictions.defined() ? predictions : logits.argmax(-1)) == t).sum().item<int64_t>();
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
  m.words = counts.words;
  if (counts.words > 0) m.word_accuracy = double(counts.words_correct) / double(counts.words);
  return m;
}

nlohmann::json to_json(const LmMetrics& m) {
  return {{"token_accuracy", m.token_accuracy},
          {"loss", m.loss},
          {"bits_per_byte", m.bits_per_byte},
          {"word_accuracy", m.word_accuracy},
          {"examples", m.sequences},
          {"tokens", m.tokens},
          {"bytes", m.bytes},
          {"words", m.words}};
}

LmMetrics evaluate_lm(const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn,
                      const LmDataset& data, int64_t batches, int64_t batch_size,
                      const TokenTable& tokens) {
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
    const auto predictions = logits.argmax(-1);
    total += count_predictions(logits.reshape({-1, logits.size(-1)}), targets, tokens.byte_lengths,
                               predictions.reshape({-1}));
    const auto cpu_predictions = predictions.to(torch::kCPU);
    const auto rows = batch.narrow(1, 1, batch.size(1) - 1).to(torch::kCPU);
    const auto first = batch.select(1, 0).to(torch::kCPU, torch::kInt64).contiguous();
    for (int64_t b = 0; b < batch.size(0); ++b) {
      total += count_words(first.data_ptr<int64_t>()[b], rows[b], cpu_predictions[b], tokens.texts);
    }
    sequences += batch.size(0);
  }
  return metrics_from_counts(total, sequences);
}

}  // namespace kvtune

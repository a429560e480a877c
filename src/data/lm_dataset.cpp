#include "data/lm_dataset.h"

#include <random>

#include "common/check.h"
#include "common/portable_random.h"

namespace kvtune {

LmDataset::LmDataset(const std::vector<std::vector<int64_t>>& docs, int64_t seq_len)
    : seq_len_(seq_len) {
  KVT_CHECK(seq_len > 0, "seq_len must be positive");
  for (const auto& d : docs) stream_.insert(stream_.end(), d.begin(), d.end());
  KVT_CHECK(num_tokens() > seq_len + 1, "corpus has only ", num_tokens(),
            " tokens: fewer than one sequence of ", seq_len + 1,
            " (use a larger corpus or a smaller data.seq_len)");
}

torch::Tensor LmDataset::train_batch(int64_t batch, uint64_t seed, int64_t step) const {
  auto out = torch::empty({batch, seq_len_ + 1}, torch::kInt64);
  auto* o = out.data_ptr<int64_t>();
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
  // Portable draws (common/portable_random.h): the same batches with every standard library.
  const int64_t last_start = num_tokens() - seq_len_ - 1;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t s = uniform_between(rng, 0, last_start);
    std::copy_n(stream_.begin() + s, seq_len_ + 1, o + b * (seq_len_ + 1));
  }
  return out;
}

int64_t LmDataset::num_eval_windows() const {
  return (num_tokens() - 1) / seq_len_;
}

torch::Tensor LmDataset::eval_batch(int64_t index, int64_t batch) const {
  const int64_t first = index * batch;
  const int64_t count = std::min(batch, num_eval_windows() - first);
  KVT_CHECK(count > 0, "evaluation batch ", index, " is past the end of the held-out set");
  auto out = torch::empty({count, seq_len_ + 1}, torch::kInt64);
  auto* o = out.data_ptr<int64_t>();
  for (int64_t b = 0; b < count; ++b) {
    std::copy_n(stream_.begin() + (first + b) * seq_len_, seq_len_ + 1, o + b * (seq_len_ + 1));
  }
  return out;
}

}  // namespace kvtune

#include "train/background_counts.h"

#include <filesystem>

#include "bank/tensor_file.h"
#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {

namespace {

BackgroundCounts empty_counts(TransformerLM& model) {
  BackgroundCounts c;
  for (const auto& layer : model->memory_layers()) {
    KVT_CHECK(!layer->banks().empty(), "background counts: a memory layer has no base bank");
    const int64_t n = layer->banks().front()->size();
    c.df.push_back(torch::zeros({n}, torch::kInt64));
    c.count.push_back(torch::zeros({n}, torch::kInt64));
  }
  return c;
}

}  // namespace

void add_background_batch(BackgroundCounts& counts, TransformerLM& model) {
  const auto layers = model->memory_layers();
  KVT_CHECK(counts.df.size() == layers.size(), "background counts: ", counts.df.size(),
            " layers counted but the model has ", layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t n = counts.df[i].size(0);
    const auto& last = layers[i]->last_ids();
    const int64_t rows = last.size(0);
    const auto ids = last.reshape({rows, -1});
    // Global ids: the base bank is the first attached, ids [0, n); later banks and -1 are not.
    // Each sequence is one unit of df: its ids are offset by row * n into one bincount.
    const auto in_base = (ids >= 0) & (ids < n);
    const auto offset = torch::arange(rows, torch::kInt64).unsqueeze(1) * n;
    const auto c =
        torch::bincount((ids + offset).masked_select(in_base), {}, rows * n).reshape({rows, n});
    counts.count[i] += c.sum(0);
    counts.df[i] += (c > 0).to(torch::kInt64).sum(0);
    if (i == 0) counts.sequences += rows;
  }
}

BackgroundCounts count_background(TransformerLM& model, const LmDataset& data, int64_t batches,
                                  int64_t batch_size, uint64_t seed) {
  KVT_CHECK(batches > 0 && batch_size > 0,
            "background counts need at least one batch of one "
            "sequence, got ",
            batches, " x ", batch_size);
  KVT_CHECK(data.num_tokens() > data.seq_len(), "background counts: the corpus has ",
            data.num_tokens(), " tokens, too few for one sequence of ", data.seq_len());
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  BackgroundCounts counts = empty_counts(model);
  for (int64_t b = 0; b < batches; ++b) {
    const auto batch = data.train_batch(batch_size, seed, b);
    model->forward(batch.narrow(1, 0, batch.size(1) - 1));
    add_background_batch(counts, model);
  }
  if (was_training) model->train();
  return counts;
}

void write_background(const std::string& path, const BackgroundCounts& counts) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"sequences", torch::tensor({counts.sequences}, torch::kInt64)}};
  for (size_t i = 0; i < counts.df.size(); ++i) {
    tensors.emplace_back("df_" + std::to_string(i), counts.df[i].contiguous());
    tensors.emplace_back("count_" + std::to_string(i), counts.count[i].contiguous());
  }
  write_tensors(path, tensors);
}

BackgroundCounts read_background(const std::string& path, const TransformerLM& model) {
  KVT_CHECK(is_file(path), path,
            " not found: method sparse ranks slots by background access counts; compute them "
            "with `kvtune background --model DIR` (pretraining writes them)");
  BackgroundCounts c;
  const auto sequences = read_tensor(path, "sequences");
  KVT_CHECK(sequences.scalar_type() == torch::kInt64 && sequences.numel() == 1, path,
            ": /sequences must hold one int64, got ", sequences.numel(), " values of ",
            sequences.scalar_type());
  c.sequences = sequences.item<int64_t>();
  KVT_CHECK(c.sequences > 0, path, ": /sequences is ", c.sequences,
            ", expected > 0: compute the "
            "counts again with `kvtune background --model DIR`");
  const auto layers = model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    // A split base bank (memory parallelism): the counts cover the whole bank, on every rank.
    const auto* sharding = layers[i]->sharding();
    const int64_t n = sharding                     ? sharding->total_rows
                      : layers[i]->banks().empty() ? 0
                                                   : layers[i]->banks().front()->size();
    for (const char* name : {"df_", "count_"}) {
      const std::string key = name + std::to_string(i);
      auto t = read_tensor(path, key);
      KVT_CHECK(t.scalar_type() == torch::kInt64 && t.dim() == 1 && t.size(0) == n, path, ": /",
                key, " must be int64 [", n, "] (the base bank of memory layer ", i, "), got ",
                t.scalar_type(), " ", t.sizes(),
                ": the counts belong to another model; compute them again with `kvtune "
                "background --model DIR`");
      const bool in_range =
          t.numel() == 0 || (t.min().item<int64_t>() >= 0 &&
                             (name[0] == 'c' || t.max().item<int64_t>() <= c.sequences));
      KVT_CHECK(in_range, path, ": /", key, " holds counts outside [0, ",
                name[0] == 'c' ? std::string("inf") : std::to_string(c.sequences),
                "]: the file is damaged; compute the counts again");
      (name[0] == 'd' ? c.df : c.count).push_back(t);
    }
  }
  return c;
}

}  // namespace kvtune

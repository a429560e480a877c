#include "train/remember.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "attention/knn_attention.h"
#include "bank/bank_io.h"
#include "bank/indexed_bank.h"
#include "common/check.h"
#include "common/path_checks.h"
#include "data/text_reader.h"
#include "model/model_io.h"
#include "train/kmeans.h"
#include "train/run_model.h"
#include "train/sparse_row_adam.h"

namespace kvtune {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kIgnore = -100;  // target of a padded position

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double cpu_seconds_since(std::clock_t start) {
  return double(std::clock() - start) / CLOCKS_PER_SEC;
}

// Inputs [B, T] (right-padded with 0: the model is causal, so padding never changes a row's
// predictions), targets [B, T] (kIgnore where padded) and the mask of real positions.
struct Batch {
  torch::Tensor inputs, targets, valid;
};

// Each document cut into windows of at most `max_len` + 1 tokens that overlap by one, so that
// every token after a document's first is predicted exactly once and a document that fits the
// model is seen whole, from its <bos>, as a prompt would be.
std::vector<Batch> make_batches(const std::vector<std::vector<int64_t>>& docs, int64_t max_len,
                                int64_t batch_size, int64_t* tokens) {
  std::vector<std::vector<int64_t>> windows;
  for (const auto& doc : docs) {
    const int64_t n = static_cast<int64_t>(doc.size());
    for (int64_t start = 0; start + 1 < n; start += max_len) {
      const int64_t end = std::min(n, start + max_len + 1);
      windows.emplace_back(doc.begin() + start, doc.begin() + end);
    }
  }
  std::vector<Batch> batches;
  *tokens = 0;
  for (size_t first = 0; first < windows.size(); first += batch_size) {
    const size_t last = std::min(windows.size(), first + static_cast<size_t>(batch_size));
    int64_t width = 0;
    for (size_t w = first; w < last; ++w) {
      width = std::max<int64_t>(width, static_cast<int64_t>(windows[w].size()) - 1);
    }
    const int64_t rows = static_cast<int64_t>(last - first);
    Batch b{torch::zeros({rows, width}, torch::kInt64),
            torch::full({rows, width}, kIgnore, torch::kInt64),
            torch::zeros({rows, width}, torch::kBool)};
    auto in = b.inputs.accessor<int64_t, 2>();
    auto out = b.targets.accessor<int64_t, 2>();
    auto ok = b.valid.accessor<bool, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      const auto& w = windows[first + r];
      for (size_t t = 0; t + 1 < w.size(); ++t) {
        in[r][t] = w[t];
        out[r][t] = w[t + 1];
        ok[r][t] = true;
      }
      *tokens += static_cast<int64_t>(w.size()) - 1;
    }
    batches.push_back(std::move(b));
  }
  return batches;
}

// Restores, whatever happens, what remember changes for its work: the memory layer's banks, the
// requires_grad flags of every parameter and attached bank tensor, query capture, train mode.
class ModelGuard {
 public:
  ModelGuard(TransformerLM& model, MemoryLayer layer)
      : model_(model), layer_(std::move(layer)), banks_(layer_->banks()) {
    was_training_ = model_->is_training();
    for (auto& p : model_->parameters()) flags_.emplace_back(p, p.requires_grad());
    for (auto& l : model_->memory_layers()) {
      for (const auto& b : l->banks()) {
        flags_.emplace_back(b->bank().keys, b->bank().keys.requires_grad());
        flags_.emplace_back(b->bank().values, b->bank().values.requires_grad());
      }
    }
    for (auto& [t, on] : flags_) t.set_requires_grad(false);
    model_->eval();
  }
  ~ModelGuard() {
    layer_->set_capture_queries(false);
    layer_->detach_all();
    for (const auto& b : banks_) layer_->attach(b);
    for (auto& [t, on] : flags_) t.set_requires_grad(on);
    if (was_training_) model_->train();
  }
  ModelGuard(const ModelGuard&) = delete;
  ModelGuard& operator=(const ModelGuard&) = delete;

  // The layer's own banks, then `extra` (null entries skipped); returns the global id of row 0
  // of each extra bank (-1 for a null one).
  std::vector<int64_t> attach_after_own(const std::vector<std::shared_ptr<IndexedBank>>& extra) {
    layer_->detach_all();
    int64_t total = 0;
    for (const auto& b : banks_) {
      layer_->attach(b);
      total += b->size();
    }
    std::vector<int64_t> offsets;
    for (const auto& b : extra) {
      offsets.push_back(b ? total : -1);
      if (!b) continue;
      layer_->attach(b);
      total += b->size();
    }
    return offsets;
  }

 private:
  TransformerLM& model_;
  MemoryLayer layer_;
  std::vector<std::shared_ptr<IndexedBank>> banks_;
  std::vector<std::pair<torch::Tensor, bool>> flags_;
  bool was_training_ = false;
};

struct PassResult {
  double nats = 0;
  int64_t correct = 0, tokens = 0;
  std::vector<torch::Tensor> queries;  // [positions * heads, key_dim] per batch
  std::vector<torch::Tensor> ids;      // [positions * heads, k] global ids per batch
  std::vector<torch::Tensor> losses;   // [positions] nats of each predicted token, per batch
  double loss() const { return tokens > 0 ? nats / double(tokens) : 0.0; }
  double accuracy() const { return tokens > 0 ? double(correct) / double(tokens) : 0.0; }
};

// One pass over the text without gradient: loss, accuracy, and what the memory layer saw.
PassResult observe(TransformerLM& model, MemoryLayer& layer, const std::vector<Batch>& batches,
                   bool capture_queries) {
  torch::NoGradGuard no_grad;
  layer->set_capture_queries(capture_queries);
  PassResult r;
  const int64_t dk = layer->options().key_dim;
  for (const auto& b : batches) {
    const auto logits = model->forward(b.inputs);
    const auto flat = logits.reshape({-1, logits.size(-1)}).to(torch::kFloat64);
    const auto targets = b.targets.reshape({-1});
    const auto nats = torch::nn::functional::cross_entropy(
        flat, targets,
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(
            torch::kNone));
    r.nats += nats.sum().item<double>();
    r.losses.push_back(nats.masked_select(b.valid.reshape({-1})));
    r.correct += (flat.argmax(-1).eq(targets) & b.valid.reshape({-1})).sum().item<int64_t>();
    r.tokens += b.valid.sum().item<int64_t>();
    const auto ids = layer->last_ids();  // [B, T, heads, k]
    r.ids.push_back(ids.index({b.valid}).reshape({-1, ids.size(-1)}));
    if (capture_queries) {
      r.queries.push_back(layer->last_queries().index({b.valid}).reshape({-1, dk}));
    }
  }
  layer->set_capture_queries(false);
  return r;
}

// Retrievals of each of the `n` rows of the bank that starts at global id `offset`.
torch::Tensor count_retrievals(const std::vector<torch::Tensor>& ids, int64_t offset, int64_t n) {
  auto counts = torch::zeros({n}, torch::kInt64);
  for (const auto& chunk : ids) {
    const auto flat = chunk.reshape({-1});
    const auto in_bank = (flat >= offset) & (flat < offset + n);
    const auto rows = flat.masked_select(in_bank) - offset;
    counts.index_add_(0, rows, torch::ones_like(rows));
  }
  return counts;
}

// The first slot id never used by the bank: ids of evicted slots are not handed out again.
int64_t next_slot_id(const Bank& bank, nlohmann::json& provenance) {
  int64_t next = 0;
  if (provenance.contains("next_slot_id") && provenance["next_slot_id"].is_number_integer()) {
    next = provenance["next_slot_id"].get<int64_t>();
  }
  if (bank.size() > 0) next = std::max(next, bank.slot_ids.max().item<int64_t>() + 1);
  return next;
}

Bank select_rows(const Bank& bank, const torch::Tensor& rows, const torch::Tensor& usage) {
  Bank out;
  out.meta = bank.meta;
  out.keys = bank.keys.index_select(0, rows).contiguous();
  out.values = bank.values.index_select(0, rows).contiguous();
  out.slot_ids = bank.slot_ids.index_select(0, rows).contiguous();
  out.usage = usage.index_select(0, rows).contiguous();
  return out;
}

}  // namespace

std::vector<std::vector<int64_t>> remember_documents(const std::string& text_path,
                                                     const Tokenizer& tokenizer) {
  std::vector<std::vector<int64_t>> docs;
  for (const auto& entry : read_plain_text(text_path)) {
    docs.push_back(tokenizer.encode(entry.text, /*add_bos=*/true, /*add_eos=*/true));
  }
  KVT_CHECK(!docs.empty(), "text file ", text_path,
            " has no text to remember (it is empty or only whitespace)");
  return docs;
}

std::vector<int64_t> least_used_rows(const torch::Tensor& usage, const torch::Tensor& slot_ids,
                                     int64_t n) {
  KVT_CHECK(usage.numel() == slot_ids.numel(), "least_used_rows: usage has ", usage.numel(),
            " rows but slot_ids ", slot_ids.numel());
  KVT_CHECK(n >= 0 && n <= usage.numel(), "least_used_rows: cannot pick ", n, " of ", usage.numel(),
            " rows");
  const auto u = usage.contiguous();
  const auto s = slot_ids.contiguous();
  const int64_t* pu = u.data_ptr<int64_t>();
  const int64_t* ps = s.data_ptr<int64_t>();
  std::vector<int64_t> rows(u.numel());
  std::iota(rows.begin(), rows.end(), 0);
  std::partial_sort(rows.begin(), rows.begin() + n, rows.end(), [&](int64_t a, int64_t b) {
    return pu[a] < pu[b] || (pu[a] == pu[b] && ps[a] < ps[b]);
  });
  rows.resize(n);
  std::sort(rows.begin(), rows.end());
  return rows;
}

Bank empty_memory_bank(const TransformerLM& model, int64_t memory_layer, const std::string& name) {
  const auto layers = model->memory_layers();
  KVT_CHECK(memory_layer >= 0 && memory_layer < static_cast<int64_t>(layers.size()),
            "memory layer ", memory_layer, " does not exist: the model has ", layers.size(),
            " memory layer(s)");
  const auto& layer = layers[memory_layer];
  KVT_CHECK(!layer->banks().empty(), "memory layer ", memory_layer, " has no base bank attached");
  Bank bank;
  bank.keys = torch::zeros({0, layer->options().key_dim}, torch::kFloat32);
  bank.values = torch::zeros({0, layer->options().value_dim}, torch::kFloat32);
  bank.slot_ids = torch::zeros({0}, torch::kInt64);
  bank.usage = torch::zeros({0}, torch::kInt64);
  bank.meta.name = name;
  bank.meta.trainable = true;
  bank.meta.key_dim = layer->options().key_dim;
  bank.meta.value_dim = layer->options().value_dim;
  bank.meta.score_scale = layer->banks().front()->bank().meta.score_scale;
  bank.meta.model_fingerprint = model_fingerprint(model);
  bank.meta.memory_layer = memory_layer;
  bank.meta.index_factory = "Flat";
  bank.meta.provenance = nlohmann::json{{"written_by", "kvtune remember"}}.dump();
  return bank;
}

RememberStats remember(TransformerLM& model, Bank& bank,
                       const std::vector<std::vector<int64_t>>& docs,
                       const RememberOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  KVT_CHECK(options.slots >= 0, "remember: slots must be >= 0 (0 = one per token and head), got ",
            options.slots);
  KVT_CHECK(options.steps >= 0, "remember: steps must be >= 0, got ", options.steps);
  KVT_CHECK(options.lr > 0 && std::isfinite(options.lr), "remember: lr must be > 0, got ",
            options.lr);
  KVT_CHECK(options.capacity >= 1, "remember: capacity must be >= 1, got ", options.capacity);
  KVT_CHECK(options.value_init == "neutral" || options.value_init == "zero",
            "remember: unknown value init '", options.value_init, "': choose neutral or zero");
  KVT_CHECK(options.min_loss >= 0 && std::isfinite(options.min_loss),
            "remember: min_loss must be >= 0 (0 = every position), got ", options.min_loss);
  KVT_CHECK(options.batch_size >= 1, "remember: batch size must be >= 1, got ", options.batch_size);
  const auto layers = model->memory_layers();
  const int64_t li = bank.meta.memory_layer;
  KVT_CHECK(li >= 0 && li < static_cast<int64_t>(layers.size()), "remember: bank '", bank.meta.name,
            "' is for memory layer ", li, " but the model has ", layers.size(), " memory layer(s)");
  MemoryLayer layer = layers[li];
  const auto& lo = layer->options();
  KVT_CHECK(bank.meta.key_dim == lo.key_dim && bank.meta.value_dim == lo.value_dim,
            "remember: bank '", bank.meta.name, "' has key_dim ", bank.meta.key_dim,
            " and value_dim ", bank.meta.value_dim, " but memory layer ", li, " has ", lo.key_dim,
            " and ", lo.value_dim);
  if (bank.size() > 0) validate_bank(bank, "remember: bank '" + bank.meta.name + "'");

  RememberStats stats;
  stats.documents = static_cast<int64_t>(docs.size());
  const auto batches =
      make_batches(docs, model->config().max_seq_len, options.batch_size, &stats.tokens);
  KVT_CHECK(stats.tokens > 0, "remember: the text has no token to predict (empty documents)");

  ModelGuard guard(model, layer);
  const int64_t old_n = bank.size();
  std::shared_ptr<IndexedBank> old;
  if (old_n > 0) {
    Bank frozen = bank;
    frozen.meta.trainable = false;
    old = std::make_shared<IndexedBank>(std::move(frozen), IndexConfig{});
  }
  const int64_t old_offset = guard.attach_after_own({old})[0];

  // 1. The text as the model sees it now: its queries (the new keys), loss, and which old slots
  //    it retrieves (their use).
  const auto seen = observe(model, layer, batches, /*capture_queries=*/true);
  stats.loss_before = seen.loss();
  stats.accuracy_before = seen.accuracy();
  auto queries = torch::cat(seen.queries);
  stats.queries = queries.size(0);
  queries = (queries / queries.norm(2, 1, true).clamp_min(1e-12)).contiguous();
  const torch::Tensor old_usage =
      old_n > 0 ? bank.usage + count_retrievals(seen.ids, old_offset, old_n) : bank.usage;

  if (options.min_loss > 0) {
    // Only what the model does not already predict: positions whose token costs >= min_loss.
    const auto surprising = torch::cat(seen.losses).ge(options.min_loss);
    const auto rows = surprising.repeat_interleave(lo.heads);
    KVT_CHECK(rows.any().item<bool>(), "remember: no token of the text costs the model ",
              options.min_loss, " nats or more: it predicts the text already (lower min_loss)");
    queries = queries.index({rows}).contiguous();
    stats.queries = queries.size(0);
  }
  torch::Tensor keys;
  if (options.slots == 0) {
    keys = queries;
  } else {
    KVT_CHECK(options.slots <= stats.queries, "remember: the text gives ", stats.queries,
              " queries (", lo.heads, " per token position kept), fewer than the ", options.slots,
              " slots asked for: ask for at most that many");
    keys = spherical_kmeans(queries, options.slots, options.seed);
  }
  const int64_t new_n = keys.size(0);

  // 2. Room: evict the least-used old slots, or refuse.
  KVT_CHECK(new_n <= options.capacity, "remember: the text gives ", new_n,
            " new slots but the bank's capacity is ", options.capacity,
            ": raise the capacity or write fewer slots (--slots)");
  const int64_t excess = old_n + new_n - options.capacity;
  KVT_CHECK(excess <= 0 || options.evict, "remember: bank '", bank.meta.name,
            "' is full: it holds ", old_n, " slots, the text adds ", new_n, " and the capacity is ",
            options.capacity,
            "; nothing was written: allow eviction of least-used slots, raise the capacity, or "
            "write fewer slots (--slots)");
  std::shared_ptr<IndexedBank> kept;
  if (old_n > 0) {
    std::vector<char> evicted(old_n, 0);
    for (const int64_t r :
         least_used_rows(old_usage, bank.slot_ids, std::max<int64_t>(0, excess))) {
      evicted[r] = 1;
      stats.evicted_slot_ids.push_back(bank.slot_ids[r].item<int64_t>());
    }
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < old_n; ++r) {
      if (!evicted[r]) rows.push_back(r);
    }
    stats.slots_evicted = old_n - static_cast<int64_t>(rows.size());
    if (!rows.empty()) {
      Bank k = select_rows(bank, torch::tensor(rows, torch::kInt64), old_usage);
      k.meta.trainable = false;
      kept = std::make_shared<IndexedBank>(std::move(k), IndexConfig{});
    }
  }

  // 3. The new slots: keys fixed, values from options.value_init, fitted on this text alone.
  auto provenance = nlohmann::json::parse(bank.meta.provenance, nullptr, false);
  if (!provenance.is_object()) provenance = nlohmann::json::object();
  const int64_t first_id = next_slot_id(bank, provenance);
  Bank fresh_bank;
  fresh_bank.meta = bank.meta;
  fresh_bank.meta.trainable = false;
  fresh_bank.keys = keys;
  fresh_bank.values = torch::zeros({new_n, lo.value_dim}, torch::kFloat32);
  if (options.value_init == "neutral") {
    // What the layer's head reads now at each key: the value that would leave the output at
    // that query unchanged were the slot the only one added (with many similar new slots
    // retrieved together, only roughly so).
    guard.attach_after_own({kept});
    std::vector<BankView> views;
    for (const auto& b : layer->banks()) views.push_back(b->view());
    torch::NoGradGuard no_grad;
    fresh_bank.values = knn_attention(keys, views, lo.attention).output.contiguous();
  }
  fresh_bank.slot_ids = torch::arange(first_id, first_id + new_n, torch::kInt64);
  fresh_bank.usage = torch::zeros({new_n}, torch::kInt64);
  auto fresh = std::make_shared<IndexedBank>(std::move(fresh_bank), IndexConfig{});
  const int64_t fresh_offset = guard.attach_after_own({kept, fresh})[1];

  auto& values = fresh->mutable_bank().values;
  values.set_requires_grad(true);
  {
    SparseRowAdamOptions so;
    so.lr = options.lr;
    SparseRowAdam optimizer({values}, so);
    const double scale = 1.0 / double(stats.tokens);
    for (int64_t step = 0; step < options.steps; ++step) {
      optimizer.zero_grad();
      for (const auto& b : batches) {
        const auto logits = model->forward(b.inputs);
        const auto loss =
            torch::nn::functional::cross_entropy(
                logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1}),
                torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(
                    torch::kSum)) *
            scale;
        loss.backward();
      }
      optimizer.step();
      optimizer.zero_grad();
    }
  }
  values.set_requires_grad(false);

  // 4. The text with its slots in place: loss, and the new slots' first use.
  const auto after = observe(model, layer, batches, /*capture_queries=*/false);
  stats.loss_after = after.loss();
  stats.accuracy_after = after.accuracy();
  const auto fresh_usage = count_retrievals(after.ids, fresh_offset, new_n);
  if (options.slots == 0 && options.min_loss == 0) {
    // How sharply a slot is read back: its share of the softmax of the query it was made from.
    std::vector<BankView> views;
    for (const auto& b : layer->banks()) views.push_back(b->view());
    torch::NoGradGuard no_grad;
    const auto r = knn_attention(keys, views, lo.attention);
    const auto own = torch::arange(fresh_offset, fresh_offset + new_n, torch::kInt64).unsqueeze(1);
    const auto p = torch::softmax(r.scores.to(torch::kFloat64), 1);
    stats.own_slot_weight = (p * r.ids.eq(own)).sum(1).mean().item<double>();
  }

  provenance["next_slot_id"] = first_id + new_n;
  Bank result;
  result.meta = bank.meta;
  result.meta.provenance = provenance.dump();
  const auto& f = fresh->bank();
  if (kept) {
    const auto& k = kept->bank();
    result.keys = torch::cat({k.keys, f.keys});
    result.values = torch::cat({k.values, values.detach()});
    result.slot_ids = torch::cat({k.slot_ids, f.slot_ids});
    result.usage = torch::cat({k.usage, fresh_usage});
  } else {
    result.keys = f.keys.clone();
    result.values = values.detach().clone();
    result.slot_ids = f.slot_ids.clone();
    result.usage = fresh_usage;
  }
  validate_bank(result, "remember: bank '" + bank.meta.name + "'");
  stats.slots_written = new_n;
  stats.bank_size = result.size();
  stats.seconds = seconds_since(start);
  stats.cpu_seconds = cpu_seconds_since(cpu_start);
  bank = std::move(result);
  return stats;
}

RememberStats remember_file(TransformerLM& model, const Tokenizer& tokenizer,
                            const std::string& bank_path, const std::string& text_path,
                            const RememberOptions& options, const std::string& out_path) {
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  const std::string out = out_path.empty() ? bank_path : out_path;
  const fs::path folder = fs::path(out).parent_path();
  KVT_CHECK(folder.empty() || is_folder(folder), "cannot write ", out, ": folder ", folder.string(),
            " does not exist (create it first)");
  const auto docs = remember_documents(text_path, tokenizer);
  Bank bank;
  if (path_exists(bank_path)) {
    bank = read_bank(bank_path);
    check_bank_fits_model(model, bank.meta, bank_path);
    KVT_CHECK(bank.meta.trainable, bank_path,
              ": the bank is read-only (trainable = 0, e.g. a fine-tuned domain bank); remember "
              "writes only into its own writable banks: give a new file name");
    KVT_CHECK(options.memory_layer < 0 || options.memory_layer == bank.meta.memory_layer, bank_path,
              ": the bank is for memory layer ", bank.meta.memory_layer, ", not the memory layer ",
              options.memory_layer, " asked for");
  } else {
    bank = empty_memory_bank(model, std::max<int64_t>(0, options.memory_layer),
                             fs::path(out).stem().string());
  }
  IndexConfig index;
  if (!bank.meta.index_factory.empty()) index.factory = bank.meta.index_factory;
  RememberStats stats = remember(model, bank, docs, options);
  IndexedBank(std::move(bank), index).save(out);
  stats.seconds = seconds_since(start);
  stats.cpu_seconds = cpu_seconds_since(cpu_start);
  return stats;
}

}  // namespace kvtune

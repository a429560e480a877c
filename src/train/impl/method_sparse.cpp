// Method sparse (sparse memory fine-tuning, Lin et al. 2025): no new bank; the base bank's own
// slots train. Each step ranks the slots the batch retrieved by TF-IDF against the base model's
// background counts (tfidf.h) and keeps the gradient of the top sparse.top_t rows per memory
// layer; every retrieved slot still takes part in the forward pass, every other row keeps its
// bytes. Rows train with sparse.optimizer (SGD or sparse row Adam) at optim.bank_lr. The run
// saves the base model unchanged plus patch_<i>.h5: the changed slots' new rows
// (bank/bank_patch.h), which load_run_model applies.
//
// With train.shard_base_banks (memory parallelism) each rank holds and trains one shard of every
// base bank: the retrieval counts are summed over ranks and every rank selects the same T, of
// which each keeps the rows it holds. The shards' changed rows are gathered into the one patch
// per layer that rank 0 saves; the base bank is saved as the file it was read from.
#include <filesystem>
#include <tuple>

#include <nlohmann/json.hpp>

#include "bank/bank_io.h"
#include "bank/bank_patch.h"
#include "common/check.h"
#include "common/communicator.h"
#include "model/model_io.h"
#include "train/background_counts.h"
#include "train/impl/methods.h"
#include "train/impl/recipe_checks.h"
#include "train/row_optimizer.h"
#include "train/run_model.h"
#include "train/tfidf.h"

namespace kvtune::impl {

namespace {

namespace fs = std::filesystem;

// Keeps the rows of `param`'s gradient whose mask is set; returns the rows kept.
torch::Tensor keep_rows(torch::Tensor& param, const torch::Tensor& mask) {
  auto& grad = param.mutable_grad();
  if (!grad.defined()) return torch::empty({0}, torch::kInt64);
  if (grad.is_sparse()) {
    const auto c = grad.coalesce();
    const auto rows = c.indices()[0];
    const auto keep = mask.index_select(0, rows).nonzero().reshape({-1});
    const auto kept = rows.index_select(0, keep);
    grad = torch::sparse_coo_tensor(kept.unsqueeze(0), c.values().index_select(0, keep),
                                    param.sizes(), c.options())
               .coalesce();
    return kept;
  }
  grad.mul_(mask.to(grad.scalar_type()).unsqueeze(1));
  return torch::nonzero(grad.abs().sum(1)).reshape({-1});
}

class SparseMethod : public Method {
 public:
  std::string name() const override { return "sparse"; }
  bool trains_bank_rows() const override { return true; }

  void validate(const Recipe& r, const std::string& where) const override {
    check_positive(where, "sparse.top_t", r.sparse.top_t);
    check_one_of(where, "sparse.train", r.sparse.train, {"values", "values+keys"});
    check_one_of(where, "sparse.optimizer", r.sparse.optimizer, row_optimizer_names());
    KVT_CHECK(r.domain_bank.attach.empty() && r.domain_bank.init.empty(), where,
              ": keys 'domain_bank.attach' and 'domain_bank.init' are for method memory; method "
              "sparse trains the base bank's own slots: remove them");
  }

  void load_inputs(const Recipe& r, TransformerLM& model, const std::string& base_dir) override {
    const auto path = (fs::path(base_dir) / "model" / kBackgroundFile).string();
    background_ = read_background(path, model);
  }

  void prepare(MethodSetup& setup) override {
    const Recipe& r = setup.recipe;
    TrainState& s = setup.state;
    top_t_ = r.sparse.top_t;
    train_keys_ = r.sparse.train == "values+keys";
    provenance_ = nlohmann::json{{"recipe", r.name},        {"domain", r.data.domain},
                                 {"method", "sparse"},      {"top_t", r.sparse.top_t},
                                 {"train", r.sparse.train}, {"optimizer", r.sparse.optimizer}}
                      .dump();
    s.row_optimizer = r.sparse.optimizer;
    layers_ = s.model->memory_layers();
    for (auto& layer : layers_) {
      auto bank = layer->banks().front();
      auto& b = bank->mutable_bank();
      // A shard is saved as the file it came from: no copy of its rows to put back.
      const bool split = layer->sharding() != nullptr;
      original_keys_.push_back(split ? torch::Tensor() : b.keys.detach().clone());
      original_values_.push_back(split ? torch::Tensor() : b.values.detach().clone());
      if (split) s.split_banks.push_back(bank);
      changed_.push_back(torch::zeros({b.size()}, torch::kBool));
      s.method_state.push_back(changed_.back());  // a resumed run still knows what changed
      b.values.set_requires_grad(true);
      b.keys.set_requires_grad(train_keys_);
      if (train_keys_) s.bank_params.push_back(b.keys);
      s.bank_params.push_back(b.values);
      s.banks.push_back(bank);
    }
    s.after_backward = [this](int64_t) { select_rows(); };
  }

  // Every rank: the patches, the changed rows of a split bank gathered from every shard in rank
  // order (so by ascending slot, as one process lays them).
  void finish(TrainState& s) override {
    torch::NoGradGuard no_grad;
    patches_.clear();
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto bank = layers_[i]->banks().front();
      const auto rows = changed_[i].nonzero().reshape({-1});
      Bank patch = make_patch(bank->bank(), rows, "patch_" + std::to_string(i), "",
                              static_cast<int64_t>(i), provenance_);
      if (const auto* shard = layers_[i]->sharding()) {
        Communicator& comm = *shard->comm;
        patch.keys = comm.allgather_rows(patch.keys.contiguous(), "patch");
        patch.values = comm.allgather_rows(patch.values.contiguous(), "patch");
        patch.slot_ids = comm.allgather_rows(patch.slot_ids.contiguous(), "patch");
        patch.usage = comm.allgather_rows(patch.usage.contiguous(), "patch");
      }
      patches_.push_back(std::move(patch));
    }
  }

  void save(TrainState& s, const ModelConfig& config, const Tokenizer& tokenizer,
            const std::string& model_dir) override {
    torch::NoGradGuard no_grad;
    KVT_CHECK(patches_.size() == layers_.size(), "method sparse: save before finish");
    // The base's own rows back in place: the folder holds the base model unchanged (same
    // fingerprint) and the patches. A split bank is saved as its file (model_io.h).
    for (size_t i = 0; i < layers_.size(); ++i) {
      changed_slots_.push_back(patches_[i].size());
      if (!original_keys_[i].defined()) continue;
      auto bank = layers_[i]->banks().front();
      auto& b = bank->mutable_bank();
      b.keys.copy_(original_keys_[i]);
      b.values.copy_(original_values_[i]);
      if (train_keys_) bank->rebuild_index();
    }
    const std::string fingerprint = model_fingerprint(s.model);
    save_model(model_dir, s.model, config, tokenizer);
    const auto background = fs::path(model_dir) / kBackgroundFile;
    write_background(background.string(), background_);
    for (size_t i = 0; i < patches_.size(); ++i) {
      patches_[i].meta.model_fingerprint = fingerprint;
      patches_[i].meta.score_scale = layers_[i]->banks().front()->bank().meta.score_scale;
      write_bank((fs::path(model_dir) / patch_bank_file(i)).string(), patches_[i]);
      if (!original_keys_[i].defined()) continue;  // a shard still holds its tuned rows
      auto bank = layers_[i]->banks().front();
      if (apply_patch_rows(bank->mutable_bank(), patches_[i], patch_bank_file(i)))
        bank->rebuild_index();
    }
  }

  nlohmann::json report() const override {
    return {{"sparse",
             {{"top_t", top_t_},
              {"train_keys", train_keys_},
              {"background_sequences", background_.sequences},
              {"changed_slots", changed_slots_}}}};
  }

 private:
  // The step's T per layer: the gradient of every other row is dropped.
  void select_rows() {
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto& b = layers_[i]->banks().front()->mutable_bank();
      const int64_t n = b.size();
      // Global ids number the base bank whole; this rank holds rows [first, first + n).
      const auto* shard = layers_[i]->sharding();
      const int64_t first = shard ? shard->offset : 0;
      const int64_t total = shard ? shard->total_rows : n;
      const auto ids = layers_[i]->last_ids().reshape({-1});
      const auto in_base = ids.masked_select((ids >= 0) & (ids < total));
      const auto top = global_top_t(in_base, background_.df[i]);
      const auto mine = top.masked_select((top >= first) & (top < first + n)) - first;
      auto mask = torch::zeros({n}, torch::kBool);
      mask.index_fill_(0, mine, true);
      const auto kept = keep_rows(b.values, mask);
      changed_[i].index_fill_(0, kept, true);
      if (train_keys_) changed_[i].index_fill_(0, keep_rows(b.keys, mask), true);
    }
  }

  // T of the global batch (ascending slots), from this rank's retrieved base slots. The counts
  // travel sparse: each rank's distinct slots and their counts, gathered and summed by slot, so
  // the exchange grows with the slots retrieved, not with the bank. top_t_slots over the distinct
  // slots (ascending) picks what it picks over the dense counts: the zeros never enter T, and
  // equal scores go to the smaller slot either way.
  torch::Tensor global_top_t(const torch::Tensor& retrieved, const torch::Tensor& df) const {
    const auto sorted = std::get<0>(torch::sort(retrieved));
    const auto distinct = torch::unique_consecutive(sorted, /*return_inverse=*/false,
                                                    /*return_counts=*/true);
    const auto pairs = torch::stack({std::get<0>(distinct), std::get<2>(distinct)}, 1).contiguous();
    const auto all = world().allgather_rows(pairs, "sparse selection");
    const auto slots_of_all = all.select(1, 0).contiguous();
    const auto uniq = at::_unique(slots_of_all, /*sorted=*/true, /*return_inverse=*/true);
    const auto& slots = std::get<0>(uniq);
    auto counts = torch::zeros({slots.size(0)}, torch::kInt64);
    counts.index_add_(0, std::get<1>(uniq), all.select(1, 1).contiguous());
    const auto picked =
        top_t_slots(counts, df.index_select(0, slots), background_.sequences, top_t_);
    return slots.index_select(0, picked);
  }

  BackgroundCounts background_;
  std::vector<Bank> patches_;
  std::vector<MemoryLayer> layers_;
  std::vector<torch::Tensor> original_keys_, original_values_, changed_;
  std::vector<int64_t> changed_slots_;
  int64_t top_t_ = 0;
  bool train_keys_ = false;
  std::string provenance_;
};

}  // namespace

std::unique_ptr<Method> make_sparse_method() {
  return std::make_unique<SparseMethod>();
}

}  // namespace kvtune::impl

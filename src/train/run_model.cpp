#include "train/run_model.h"

#include <filesystem>

#include "bank/bank_io.h"
#include "bank/bank_patch.h"
#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {

std::string domain_bank_file(int64_t memory_layer) {
  return "domain_" + std::to_string(memory_layer) + ".h5";
}

std::string patch_bank_file(int64_t memory_layer) {
  return "patch_" + std::to_string(memory_layer) + ".h5";
}

void check_bank_fits_model(const TransformerLM& model, const BankMeta& meta,
                           const std::string& path) {
  KVT_CHECK(!meta.model_fingerprint.empty(), path,
            ": the bank records no model fingerprint (it was not trained for a model, e.g. made "
            "by `kvtune bank create`): attach banks written by `kvtune finetune` or "
            "`kvtune remember`");
  const std::string fingerprint = model_fingerprint(model);
  KVT_CHECK(meta.model_fingerprint == fingerprint, path, ": the bank was trained for model ",
            meta.model_fingerprint, " but this model is ", fingerprint,
            " (another config or base bank): attach it to the model its run fine-tuned");
  const auto layers = model->memory_layers();
  KVT_CHECK(meta.memory_layer >= 0 && meta.memory_layer < static_cast<int64_t>(layers.size()), path,
            ": the bank is for memory layer ", meta.memory_layer, " but the model has ",
            layers.size(), " memory layer(s)");
}

namespace {

// The patch's rows into the base bank of its layer (fingerprint already checked).
std::shared_ptr<IndexedBank> apply_patch(TransformerLM& model, const Bank& patch,
                                         const std::string& path) {
  auto base = model->memory_layers()[patch.meta.memory_layer]->banks().front();
  if (apply_patch_rows(base->mutable_bank(), patch, path)) base->rebuild_index();
  return base;
}

}  // namespace

std::shared_ptr<IndexedBank> attach_bank_file(TransformerLM& model, const std::string& path) {
  auto bank = IndexedBank::load(path, IndexConfig{});
  const auto& meta = bank->bank().meta;
  check_bank_fits_model(model, meta, path);
  auto layers = model->memory_layers();
  bank->set_trainable(false);
  if (meta.kind == kBankKindPatch) return apply_patch(model, bank->bank(), path);
  layers[meta.memory_layer]->attach(bank);
  return bank;
}

std::shared_ptr<IndexedBank> load_run_bank(const LoadedModel& loaded, const std::string& model_dir,
                                           int64_t layer, const std::string& which, bool* stamped) {
  KVT_CHECK(which == "domain" || which == "base", "unknown bank kind '", which,
            "': use domain (the fine-tuned bank) or base (the model's own)");
  auto layers = loaded.model->memory_layers();
  const auto count = static_cast<int64_t>(layers.size());
  KVT_CHECK(layer >= 0 && layer < count, model_dir, ": memory layer ", layer,
            " does not exist: the model has ", count, " memory layer(s), 0 to ", count - 1);
  const std::string fingerprint = model_fingerprint(loaded.model);
  if (stamped) *stamped = false;
  std::shared_ptr<IndexedBank> bank;
  if (which == "base") {
    bank = layers[layer]->banks().front();
  } else {
    const auto path = (std::filesystem::path(model_dir) / domain_bank_file(layer)).string();
    KVT_CHECK(path_exists(path), model_dir, " has no ", domain_bank_file(layer),
              ": it is not the model of a run fine-tuned with method memory (export its base "
              "bank with --which base, or give the model folder of a memory run)");
    bank = IndexedBank::load(path, IndexConfig{});
    const auto& meta = bank->bank().meta;
    KVT_CHECK(meta.model_fingerprint.empty() || meta.model_fingerprint == fingerprint, path,
              ": the bank was trained for model ", meta.model_fingerprint, " but ", model_dir,
              " is model ", fingerprint, ": the file was copied from another run");
    KVT_CHECK(meta.memory_layer == -1 || meta.memory_layer == layer, path,
              ": the bank names memory layer ", meta.memory_layer, ", not ", layer,
              ": the file was renamed or copied from another run");
    const auto& opts = layers[layer]->options();
    KVT_CHECK(meta.key_dim == opts.key_dim && meta.value_dim == opts.value_dim, path,
              ": the bank has key_dim ", meta.key_dim, " and value_dim ", meta.value_dim,
              " but memory layer ", layer, " of ", model_dir, " takes ", opts.key_dim, " and ",
              opts.value_dim, ": the file was copied from another run");
    if (stamped) *stamped = meta.model_fingerprint.empty();
  }
  auto& meta = bank->mutable_bank().meta;
  meta.model_fingerprint = fingerprint;
  meta.memory_layer = layer;
  return bank;
}

LoadedModel load_run_model(const std::string& model_dir) {
  LoadedModel loaded = load_model(model_dir);
  const int64_t n = static_cast<int64_t>(loaded.model->memory_layers().size());
  // Patches first: they were made against the folder's own base banks (fingerprint checked).
  std::vector<std::pair<std::string, Bank>> patches;
  for (int64_t i = 0; i < n; ++i) {
    const auto path = (std::filesystem::path(model_dir) / patch_bank_file(i)).string();
    if (!path_exists(path)) continue;
    const Bank patch = read_bank(path);
    KVT_CHECK(patch.meta.kind == kBankKindPatch && patch.meta.memory_layer == i, path,
              ": not the patch of memory layer ", i,
              ": the file was renamed or copied from another run");
    check_bank_fits_model(loaded.model, patch.meta, path);
    patches.emplace_back(path, patch);
  }
  for (const auto& [path, patch] : patches) apply_patch(loaded.model, patch, path);
  for (int64_t i = 0; i < n; ++i) {
    const auto path = (std::filesystem::path(model_dir) / domain_bank_file(i)).string();
    if (!path_exists(path)) continue;
    const auto bank = attach_bank_file(loaded.model, path);
    KVT_CHECK(bank->bank().meta.memory_layer == i, path, ": the bank names memory layer ",
              bank->bank().meta.memory_layer, ", not ", i,
              ": the file was renamed or copied from another run");
  }
  return loaded;
}

}  // namespace kvtune

#include "train/run_model.h"

#include <filesystem>

#include "common/check.h"

namespace kvtune {

std::string domain_bank_file(int64_t memory_layer) {
  return "domain_" + std::to_string(memory_layer) + ".h5";
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

std::shared_ptr<IndexedBank> attach_bank_file(TransformerLM& model, const std::string& path) {
  auto bank = IndexedBank::load(path, IndexConfig{});
  const auto& meta = bank->bank().meta;
  check_bank_fits_model(model, meta, path);
  auto layers = model->memory_layers();
  bank->set_trainable(false);
  layers[meta.memory_layer]->attach(bank);
  return bank;
}

LoadedModel load_run_model(const std::string& model_dir) {
  LoadedModel loaded = load_model(model_dir);
  const int64_t n = static_cast<int64_t>(loaded.model->memory_layers().size());
  for (int64_t i = 0; i < n; ++i) {
    const auto path = (std::filesystem::path(model_dir) / domain_bank_file(i)).string();
    if (!std::filesystem::exists(path)) continue;
    const auto bank = attach_bank_file(loaded.model, path);
    KVT_CHECK(bank->bank().meta.memory_layer == i, path, ": the bank names memory layer ",
              bank->bank().meta.memory_layer, ", not ", i,
              ": the file was renamed or copied from another run");
  }
  return loaded;
}

}  // namespace kvtune

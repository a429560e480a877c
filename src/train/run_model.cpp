#include "train/run_model.h"

#include <filesystem>

namespace kvtune {

std::string domain_bank_file(int64_t memory_layer) {
  return "domain_" + std::to_string(memory_layer) + ".h5";
}

LoadedModel load_run_model(const std::string& model_dir) {
  LoadedModel loaded = load_model(model_dir);
  auto layers = loaded.model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto path = (std::filesystem::path(model_dir) / domain_bank_file(i)).string();
    if (!std::filesystem::exists(path)) continue;
    auto bank = IndexedBank::load(path, IndexConfig{});
    bank->set_trainable(false);
    layers[i]->attach(bank);
  }
  return loaded;
}

}  // namespace kvtune

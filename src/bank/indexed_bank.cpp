#include "bank/indexed_bank.h"

#include <filesystem>

#include "bank/bank_io.h"
#include "common/atomic_file.h"
#include "common/check.h"

namespace kvtune {

IndexedBank::IndexedBank(Bank bank, IndexConfig config)
    : bank_(std::move(bank)), config_(std::move(config)) {
  KVT_CHECK(bank_.keys.scalar_type() == torch::kFloat32, "bank '", bank_.meta.name,
            "': indexed banks hold float32 keys");
  bank_.keys = bank_.keys.contiguous();
  bank_.meta.index_factory = config_.factory;
  rebuild_index();
  set_trainable(bank_.meta.trainable);
}

std::shared_ptr<IndexedBank> IndexedBank::load(const std::string& path, const IndexConfig& config) {
  Bank bank = read_bank(path);
  const std::string index_path = index_path_for(path);
  if (!std::filesystem::exists(index_path)) {
    IndexConfig built = config;
    if (!bank.meta.index_factory.empty() && config.is_flat())
      built.factory = bank.meta.index_factory;
    return std::make_shared<IndexedBank>(std::move(bank), built);
  }
  // Keys must stay where the index (Flat) points: construct first, then swap in the index.
  IndexConfig params = config;
  if (!bank.meta.index_factory.empty()) params.factory = bank.meta.index_factory;
  auto result = std::make_shared<IndexedBank>(std::move(bank), IndexConfig{});
  result->index_ = std::make_unique<KeyIndex>(
      KeyIndex::load(index_path, result->bank_.keys.data_ptr<float>(), result->bank_.size(),
                     result->bank_.keys.size(1), params));
  result->config_ = result->index_->config();
  result->bank_.meta.index_factory = result->config_.factory;
  return result;
}

void IndexedBank::save(const std::string& path) const {
  // Both files are complete before either is renamed into place: a failure leaves the old pair.
  AtomicOutput bank_out(path), index_out(index_path_for(path));
  write_bank(bank_out.temp_path(), bank_);
  index_->save(index_out.temp_path());
  index_out.commit();
  bank_out.commit();
}

void IndexedBank::set_trainable(bool trainable) {
  bank_.meta.trainable = trainable;
  bank_.keys.set_requires_grad(trainable);
  bank_.values.set_requires_grad(trainable);
}

void IndexedBank::rebuild_index() {
  auto index = std::make_unique<KeyIndex>(bank_.keys.size(1), config_);
  index->build(bank_.keys.data_ptr<float>(), bank_.size());
  index_ = std::move(index);
  steps_since_build_ = 0;
}

void IndexedBank::after_update(const torch::Tensor& touched_rows) {
  torch::NoGradGuard no_grad;
  if (touched_rows.defined() && touched_rows.numel() > 0) {
    auto rows = bank_.keys.index_select(0, touched_rows);
    rows = rows / rows.norm(2, 1, true).clamp_min(1e-12);
    bank_.keys.index_copy_(0, touched_rows, rows);
  }
  ++steps_since_build_;
  if (index_->needs_rebuild(steps_since_build_)) rebuild_index();
}

void IndexedBank::record_usage(const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const auto valid = rows.reshape({-1});
  const auto kept = valid.index_select(0, torch::nonzero(valid >= 0).reshape({-1}));
  bank_.usage.index_add_(0, kept, torch::ones_like(kept));
}

BankView IndexedBank::view() const {
  return BankView{bank_.keys, bank_.values, index_.get(), bank_.meta.name};
}

}  // namespace kvtune

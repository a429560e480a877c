// A bank together with the index that searches it: what a model attaches and trains.
#pragma once

#include <memory>
#include <string>

#include "attention/bank_view.h"
#include "bank/bank.h"
#include "index/key_index.h"

namespace kvtune {

class IndexedBank {
 public:
  // Builds the index from `config` (its factory string is recorded in the bank's metadata).
  IndexedBank(Bank bank, IndexConfig config);

  // Reads `path` and the index beside it (index_path_for(path)) when that file exists; otherwise
  // builds one from `config`. Search parameters (nprobe, efSearch) come from `config`.
  static std::shared_ptr<IndexedBank> load(const std::string& path, const IndexConfig& config);

  // Writes the bank and its index beside it, each to a temporary name first; both are renamed
  // into place only when both are complete (index first, then the bank).
  void save(const std::string& path) const;

  // Trainable banks have keys and values that require grad (and receive sparse row gradients).
  void set_trainable(bool trainable);
  bool trainable() const { return bank_.meta.trainable; }

  // After an optimizer step moved keys: renormalize the touched rows to unit norm, count the
  // step, and rebuild an approximate index when its rebuild interval is reached.
  void after_update(const torch::Tensor& touched_rows);
  void rebuild_index();

  // Adds one to the usage count of every retrieved row (local row ids, -1 ignored).
  void record_usage(const torch::Tensor& rows);

  BankView view() const;
  const Bank& bank() const { return bank_; }
  Bank& mutable_bank() { return bank_; }
  const KeyIndex& index() const { return *index_; }
  const IndexConfig& index_config() const { return config_; }
  int64_t size() const { return bank_.size(); }

 private:
  Bank bank_;
  IndexConfig config_;
  std::unique_ptr<KeyIndex> index_;
  int64_t steps_since_build_ = 0;
};

}  // namespace kvtune

// A bank together with the index that searches it: what a model attaches and trains.
#pragma once

#include <memory>
#include <string>

#include "attention/bank_view.h"
#include "bank/bank.h"
#include "index/key_index.h"

namespace kvtune {

// The index id recorded in the trailer of index file `index_path`, or "" when it has none.
std::string read_index_binding(const std::string& index_path);

// Removes what killed saves of bank `path` left beside it (temporary files of writers that are
// no longer running, pending indexes that were never committed), and finishes a save killed
// after its commit. IndexedBank::save calls it first.
void clean_bank_leftovers(const std::string& path);

class IndexedBank {
 public:
  // Builds the index from `config` (its factory string is recorded in the bank's metadata).
  IndexedBank(Bank bank, IndexConfig config);

  // Reads `path` and the index beside it (index_path_for(path)) when that file exists; otherwise
  // builds one from `config`. Search parameters (nprobe, efSearch) come from `config`.
  static std::shared_ptr<IndexedBank> load(const std::string& path, const IndexConfig& config);

  // Reads `path` and its index (x.faiss, bound to the bank by the index id both record); an
  // index that is not the bank's (stale, another bank's) is refused, and a corrupt one too.
  // Writes the bank and its index so that a kill at any moment leaves the old pair or the new
  // one (docs/bank-format.md, "The faiss index beside the bank"); temporary files that killed
  // saves left behind are removed first.
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

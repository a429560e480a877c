// kvtune.Bank on the torch side: a torch custom class (torch.classes.kvtune.Bank) holding one
// IndexedBank, the C++ bank plus the faiss index that searches it. The Python class in
// python/kvtune/bank.py wraps it with properties.
#pragma once

#include <memory>
#include <string>
#include <tuple>

#include <torch/custom_class.h>
#include <torch/torch.h>

#include "bank/indexed_bank.h"

namespace kvtune::python {

class BankHolder : public torch::CustomClassHolder {
 public:
  explicit BankHolder(std::shared_ptr<IndexedBank> bank) : bank_(std::move(bank)) {}

  // Bank.create / load / from_tensors (ValueError for bad arguments; RuntimeError for a bad file).
  static c10::intrusive_ptr<BankHolder> create(int64_t n, int64_t key_dim, int64_t value_dim,
                                               int64_t seed, const std::string& index,
                                               const std::string& name, bool trainable,
                                               double value_std);
  static c10::intrusive_ptr<BankHolder> load(const std::string& path, int64_t nprobe,
                                             int64_t ef_search);
  static c10::intrusive_ptr<BankHolder> from_tensors(const torch::Tensor& keys,
                                                     const torch::Tensor& values,
                                                     const c10::optional<torch::Tensor>& slot_ids,
                                                     const c10::optional<torch::Tensor>& usage,
                                                     const std::string& name,
                                                     const std::string& index, bool trainable);
  void save(const std::string& path) const;

  // The bank's own tensors (no copy): what the index searches (Flat borrows the key buffer).
  torch::Tensor keys() const { return bank_->bank().keys; }
  torch::Tensor values() const { return bank_->bank().values; }
  torch::Tensor slot_ids() const { return bank_->bank().slot_ids; }
  torch::Tensor usage() const { return bank_->bank().usage; }

  // queries [..., key_dim] (normalized to unit rows) -> (cosine scores [..., k] float32, ids
  // [..., k] int64), best first, through the bank's index.
  std::tuple<torch::Tensor, torch::Tensor> search(const torch::Tensor& queries, int64_t k) const;

  // After an optimizer step moved keys: renormalize the given rows (local row ids) to unit norm
  // and rebuild an approximate index when its rebuild interval is reached.
  void after_update(const torch::Tensor& rows);
  void rebuild_index() { bank_->rebuild_index(); }
  // Adds one to the usage of every given row (local ids; -1 ignored).
  void record_usage(const torch::Tensor& rows);

  // The metadata saved with the bank (docs/bank-format.md).
  const BankMeta& meta() const { return bank_->bank().meta; }
  BankMeta& mutable_meta() { return bank_->mutable_bank().meta; }
  void set_trainable(bool trainable) { bank_->set_trainable(trainable); }
  double effective_scale() const { return bank_->bank().effective_scale(); }
  int64_t size() const { return bank_->size(); }
  std::string index_factory() const { return bank_->index_config().factory; }

  const std::shared_ptr<IndexedBank>& bank() const { return bank_; }

 private:
  std::shared_ptr<IndexedBank> bank_;
};

// Registers the class (called from the TORCH_LIBRARY block in ops.cpp).
void register_bank_class(torch::Library& m);

}  // namespace kvtune::python

// A memory bank: unit keys, values, stable slot ids, usage counts and metadata.
// Storage layer: the attention op sees a bank through attention/bank_view.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kvtune {

// Bumped whenever the on-disk layout changes; readers refuse versions they do not know.
inline constexpr int kBankFormatVersion = 1;

struct BankMeta {
  std::string name;
  int format_version = kBankFormatVersion;
  bool trainable = false;
  int64_t key_dim = 0;
  int64_t value_dim = 0;
  double score_scale = 0.0;   // scores are score_scale * cos(q, k); 0 means sqrt(key_dim)
  std::string provenance;     // free text (JSON by convention): where the slots came from
  std::string index_factory;  // faiss factory string of the index saved beside the bank, or ""
  // The model the bank was trained for (model_io.h: model_fingerprint) and the memory layer it
  // attaches to; "" and -1 for a bank made without a model (`kvtune bank create`).
  std::string model_fingerprint;
  int64_t memory_layer = -1;
  // "" for a bank; kBankKindPatch for a patch: new rows for some slots of the base bank of
  // (model_fingerprint, memory_layer), its slot ids those slots' ids (method sparse, bank export).
  std::string kind;
};

inline constexpr const char* kBankKindPatch = "patch";

// A bank that slots came from (`kvtune bank merge`): the file as it was named and its name.
struct SourceBank {
  std::string file;
  std::string name;
  bool operator==(const SourceBank& o) const { return file == o.file && name == o.name; }
  bool operator<(const SourceBank& o) const {
    return file != o.file ? file < o.file : name < o.name;
  }
};

// Where each slot of a merged bank came from (docs/bank-format.md, "Slot origins"): one row per
// source slot, so a slot merged from several near-duplicates has several rows; the first row of
// a slot is the source slot whose key it kept. Undefined tensors: the bank records no origins.
struct SlotOrigin {
  std::vector<SourceBank> sources;
  torch::Tensor slot_id;         // [R] int64: a slot id of this bank
  torch::Tensor source;          // [R] int64: index into `sources`
  torch::Tensor source_slot_id;  // [R] int64: the slot's id in that source bank

  bool defined() const { return slot_id.defined(); }
  int64_t rows() const { return defined() ? slot_id.size(0) : 0; }
};

struct Bank {
  torch::Tensor keys;      // [N, key_dim] float32, rows of unit L2 norm
  torch::Tensor values;    // [N, value_dim] float32
  torch::Tensor slot_ids;  // [N] int64, unique, stable across merge/compact
  torch::Tensor usage;     // [N] int64, >= 0: how often each slot was retrieved
  BankMeta meta;
  SlotOrigin origin;  // merged banks only

  int64_t size() const { return keys.defined() ? keys.size(0) : 0; }
  // The scale actually used: meta.score_scale, or sqrt(key_dim) when it is 0.
  double effective_scale() const;
};

// Tolerance on |‖k‖ - 1| for a key to count as unit norm.
inline constexpr double kUnitNormTolerance = 1e-4;

// Throws kvtune::Error naming `where` (a file name or "bank 'x'") and the problem when the bank
// breaks an invariant: shapes/dtypes, N mismatch, non-finite keys or values, non-unit keys,
// duplicate slot ids, negative usage, dims that disagree with meta, and slot origins that do not
// match the slots (an unknown slot id, a slot without origin, a source index out of range).
void validate_bank(const Bank& bank, const std::string& where);

// The rows `rows` ([M] int64, in the order given) as a new bank with the same meta; slot origins
// are kept for the slots kept.
Bank select_rows(const Bank& bank, const torch::Tensor& rows);

// Random unit keys (Gaussian, normalized: the seed module's init) and small random values
// (Gaussian * value_std). Slot ids 0..n-1, usage 0. Deterministic for a seed.
Bank make_random_bank(const std::string& name, int64_t n, int64_t key_dim, int64_t value_dim,
                      uint64_t seed, bool trainable, double value_std = 0.02);

// The path of the faiss index saved beside a bank: "x.h5" -> "x.faiss".
std::string index_path_for(const std::string& bank_path);

}  // namespace kvtune

// Search over one bank's unit keys by inner product: exact over the keys' own buffer ("Flat"),
// or an approximate faiss index built from a factory string.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "index/index_config.h"

namespace faiss {
struct Index;
}

namespace kvtune {

class PendingIndexRead;

class KeyIndex {
 public:
  KeyIndex(int64_t dim, IndexConfig config);
  ~KeyIndex();
  KeyIndex(KeyIndex&&) noexcept;
  KeyIndex& operator=(KeyIndex&&) noexcept;

  // (Re)builds over keys [n, dim] float32 row-major. "Flat" keeps only the pointer: the buffer
  // must outlive the index and may change between searches (a trainable bank updates it in
  // place; search then sees the current keys with no copy). Other factories copy what they need.
  void build(const float* keys, int64_t n);

  // For each of nq queries, the k keys with the largest inner product, best first.
  // Missing results (an IVF probe that found fewer than k) have id -1 and score -inf.
  void search(const float* queries, int64_t nq, int64_t k, float* scores, int64_t* ids) const;

  bool is_exact() const { return config_.is_flat(); }
  bool built() const { return n_ > 0 && (is_exact() ? flat_keys_ != nullptr : index_ != nullptr); }
  int64_t dim() const { return dim_; }
  int64_t size() const { return n_; }
  const IndexConfig& config() const { return config_; }
  // Bytes held by the index itself (0 for Flat, which borrows the bank's keys).
  int64_t memory_bytes() const;

  // Approximate indexes over a trainable bank go stale as keys move: true when
  // `steps_since_build` reached config().rebuild_interval.
  bool needs_rebuild(int64_t steps_since_build) const;

  // faiss write_index / read_index, written atomically. A Flat index is saved as IndexFlatIP
  // (so any faiss reader can load it); loading one gives back a Flat KeyIndex over `keys`.
  void save(const std::string& path) const;
  // The index's structure is validated (index/index_check.h) before it is returned: a corrupt
  // file is a kvtune::Error, never a crash in a later search.
  static KeyIndex load(const std::string& path, const float* keys, int64_t n, int64_t dim,
                       IndexConfig search_params);
  // As above; `stored` (when not null) says whether the vectors the file stores are `keys`
  // (kUnknown for lossy codes such as PQ, which cannot be compared).
  enum class StoredKeys { kMatch, kDiffer, kUnknown };
  static KeyIndex load(const std::string& path, const float* keys, int64_t n, int64_t dim,
                       IndexConfig search_params, StoredKeys* stored);

  // load(read.path(), ...), with the index that `read` (index/index_reader.h) read: a bank and
  // its index file are read at once (bank/indexed_bank.h). `read`'s error, if any, is thrown here.
  static KeyIndex load(PendingIndexRead& read, const float* keys, int64_t n, int64_t dim,
                       IndexConfig search_params, StoredKeys* stored);

 private:
  // load's checks of an index read from `path`, and the KeyIndex over it.
  static KeyIndex load_read(std::unique_ptr<faiss::Index> index, const std::string& path,
                            const float* keys, int64_t n, int64_t dim, IndexConfig search_params,
                            StoredKeys* stored);
  void apply_search_params();

  int64_t dim_;
  IndexConfig config_;
  int64_t n_ = 0;
  const float* flat_keys_ = nullptr;
  std::unique_ptr<faiss::Index> index_;
};

}  // namespace kvtune

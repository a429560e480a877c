#include "index/key_index.h"

#include <faiss/IVFlib.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/path_checks.h"
#include "common/portable_random.h"
#include "index/impl/ivf_flat_search.h"
#include "index/index_check.h"
#include "index/index_reader.h"

namespace kvtune {
namespace {

// Runs a faiss call and turns its exceptions into kvtune::Error with context.
template <typename F>
auto faiss_call(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const faiss::FaissException& e) {
    KVT_THROW(what, ": faiss: ", e.msg);
  } catch (const std::bad_alloc&) {
    KVT_THROW(what,
              ": out of memory: give the process more memory or use a smaller bank (when "
              "reading a file, a corrupt size in it can also cause this)");
  } catch (const std::length_error&) {
    KVT_THROW(what, ": a size in the file is out of range (the file is corrupt)");
  }
}

// Counts bytes without storing them: the size of an index as faiss serializes it.
struct CountingWriter : faiss::IOWriter {
  size_t bytes = 0;
  size_t operator()(const void*, size_t size, size_t nitems) override {
    bytes += size * nitems;
    return nitems;
  }
};

void mark_missing(int64_t count, float* scores, const int64_t* ids) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0) scores[i] = -std::numeric_limits<float>::infinity();
  }
}

// faiss 1.7.3 builds the inverted multi-index ("IMI2x10,Flat") only for L2. Over unit keys L2
// ranks as the inner product does: |q - k|^2 = |q|^2 + 1 - 2 q.k, so kvtune builds IMI indexes
// in L2 and turns their distances back into inner products (l2_to_inner_products).
bool is_multi_index(const std::string& factory) {
  return factory.rfind("IMI", 0) == 0;
}

const faiss::MultiIndexQuantizer* multi_index_quantizer(const faiss::Index* index) {
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index);
  return ivf ? dynamic_cast<const faiss::MultiIndexQuantizer*>(ivf->quantizer) : nullptr;
}

void l2_to_inner_products(const float* queries, int64_t nq, int64_t dim, int64_t k, float* scores) {
  for (int64_t i = 0; i < nq; ++i) {
    const float qq = faiss::fvec_norm_L2sqr(queries + i * dim, static_cast<size_t>(dim));
    for (int64_t j = 0; j < k; ++j) scores[i * k + j] = 0.5f * (qq + 1.0f - scores[i * k + j]);
  }
}

// Adds keys to an index. For a plain IVF index the lists are assigned first and reserved at
// their final size: growing them one entry at a time leaves the heap fragmented, which cost
// ~0.2x the bank in peak memory at N = 2^20 (docs/benchmarks.md).
void add_reserved(faiss::Index* index, const float* keys, int64_t n) {
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(index);
  auto* lists = ivf ? dynamic_cast<faiss::ArrayInvertedLists*>(ivf->invlists) : nullptr;
  if (lists == nullptr) {
    index->add(n, keys);
    return;
  }
  std::vector<faiss::Index::idx_t> assign(static_cast<size_t>(n));
  ivf->quantizer->assign(n, keys, assign.data());
  std::vector<size_t> counts(ivf->nlist, 0);
  for (const auto a : assign) {
    if (a >= 0) ++counts[static_cast<size_t>(a)];
  }
  for (size_t l = 0; l < ivf->nlist; ++l) {
    lists->codes[l].reserve((lists->list_size(l) + counts[l]) * lists->code_size);
    lists->ids[l].reserve(lists->list_size(l) + counts[l]);
  }
  ivf->add_core(n, keys, nullptr, assign.data());
}

}  // namespace

KeyIndex::KeyIndex(int64_t dim, IndexConfig config) : dim_(dim), config_(std::move(config)) {
  KVT_CHECK(dim_ > 0, "index dimension must be positive, got ", dim_);
  KVT_CHECK(!config_.factory.empty(), "index factory string is empty (use \"Flat\")");
  KVT_CHECK(config_.nprobe >= 0 && config_.ef_search >= 0 && config_.rebuild_interval >= 0 &&
                config_.train_size >= 0,
            "index parameters nprobe, ef_search, rebuild_interval, train_size must be >= 0");
}

KeyIndex::~KeyIndex() = default;
KeyIndex::KeyIndex(KeyIndex&&) noexcept = default;
KeyIndex& KeyIndex::operator=(KeyIndex&&) noexcept = default;

void KeyIndex::build(const float* keys, int64_t n) {
  KVT_CHECK(keys != nullptr && n > 0, "cannot build an index over an empty bank");
  n_ = n;
  if (is_exact()) {
    flat_keys_ = keys;
    index_.reset();
    return;
  }
  const std::string what = "building index '" + config_.factory + "' over " + std::to_string(n) +
                           " keys of dim " + std::to_string(dim_);
  std::unique_ptr<faiss::Index> index(faiss_call(what, [&] {
    return faiss::index_factory(
        static_cast<int>(dim_), config_.factory.c_str(),
        is_multi_index(config_.factory) ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT);
  }));
  if (!index->is_trained) {
    int64_t nlist = 0;
    if (const auto* imi = multi_index_quantizer(index.get())) {
      // The coarse cells are products of ksub centroids per half: training needs ksub keys.
      nlist = static_cast<int64_t>(imi->pq.ksub);
      KVT_CHECK(n >= nlist, what, ": an inverted multi-index with ", nlist,
                " centroids per sub-space needs at least that many keys; use fewer bits");
    } else if (auto* ivf = faiss::ivflib::try_extract_index_ivf(index.get())) {
      nlist = ivf->nlist;
      KVT_CHECK(n >= nlist, what, ": an IVF index with ", nlist,
                " lists needs at least that many keys; use \"Flat\" or fewer lists");
    }
    int64_t want =
        config_.train_size > 0 ? config_.train_size : std::max<int64_t>(64 * nlist, 10000);
    want = std::min(want, n);
    std::vector<float> sample;
    const float* train = keys;
    if (want < n) {
      // A random subset without replacement, deterministic for the configured seed.
      std::vector<int64_t> rows(n);
      std::iota(rows.begin(), rows.end(), 0);
      std::mt19937_64 rng(config_.seed);
      for (int64_t i = 0; i < want; ++i) {
        std::swap(rows[i], rows[uniform_between(rng, i, n - 1)]);  // portable: same everywhere
      }
      std::sort(rows.begin(), rows.begin() + want);
      sample.resize(static_cast<size_t>(want * dim_));
      for (int64_t i = 0; i < want; ++i) {
        std::copy_n(keys + rows[i] * dim_, dim_, sample.data() + i * dim_);
      }
      train = sample.data();
    }
    faiss_call(what, [&] { index->train(want, train); });
  }
  faiss_call(what, [&] { add_reserved(index.get(), keys, n); });
  index_ = std::move(index);
  flat_keys_ = nullptr;
  apply_search_params();
}

void KeyIndex::apply_search_params() {
  if (!index_) return;
  if (config_.nprobe > 0) {
    auto* ivf = faiss::ivflib::try_extract_index_ivf(index_.get());
    KVT_CHECK(ivf != nullptr, "nprobe is a parameter of IVF indexes; '", config_.factory,
              "' has none (remove nprobe or use an IVF factory)");
    ivf->nprobe = static_cast<size_t>(config_.nprobe);
  }
  if (config_.ef_search > 0) {
    auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index_.get());
    KVT_CHECK(hnsw != nullptr, "efSearch is a parameter of HNSW indexes; '", config_.factory,
              "' has none (remove efSearch or use an HNSW factory)");
    hnsw->hnsw.efSearch = config_.ef_search;
  }
}

void KeyIndex::search(const float* queries, int64_t nq, int64_t k, float* scores,
                      int64_t* ids) const {
  KVT_CHECK(built(), "search on an index that was not built");
  KVT_CHECK(k > 0, "k must be positive, got ", k);
  if (nq == 0) return;
  if (is_exact()) {
    // faiss's blocked GEMM + heap kernel over the keys' own buffer: no copy of the bank.
    faiss::knn_inner_product(queries, flat_keys_, dim_, nq, n_, k, scores, ids);
  } else if (const auto* ivf = dynamic_cast<const faiss::IndexIVFFlat*>(index_.get());
             ivf != nullptr && impl::ivf_flat_searchable(*ivf)) {
    // IVF with flat codes: the lists scored by blocked products (index/impl/ivf_flat_search.h).
    faiss_call("searching index '" + config_.factory + "'",
               [&] { impl::ivf_flat_search(*ivf, queries, nq, k, scores, ids); });
  } else {
    faiss_call("searching index '" + config_.factory + "'",
               [&] { index_->search(nq, queries, k, scores, ids); });
    if (index_->metric_type == faiss::METRIC_L2) {
      l2_to_inner_products(queries, nq, dim_, k, scores);
    }
  }
  mark_missing(nq * k, scores, ids);
}

int64_t KeyIndex::memory_bytes() const {
  if (!index_) return 0;
  CountingWriter counter;
  faiss::write_index(index_.get(), &counter);
  return static_cast<int64_t>(counter.bytes);
}

bool KeyIndex::needs_rebuild(int64_t steps_since_build) const {
  return !is_exact() && config_.rebuild_interval > 0 &&
         steps_since_build >= config_.rebuild_interval;
}

void KeyIndex::save(const std::string& path) const {
  KVT_CHECK(built(), "cannot save an index that was not built");
  AtomicOutput out(path);
  faiss_call("writing index " + path, [&] {
    if (is_exact()) {
      faiss::IndexFlatIP flat(dim_);
      flat.add(n_, flat_keys_);
      faiss::write_index(&flat, out.temp_path().c_str());
    } else {
      faiss::write_index(index_.get(), out.temp_path().c_str());
    }
  });
  out.commit();
}

KeyIndex KeyIndex::load(const std::string& path, const float* keys, int64_t n, int64_t dim,
                        IndexConfig search_params) {
  return load(path, keys, n, dim, std::move(search_params), nullptr);
}

namespace {

std::unique_ptr<faiss::Index> read_index_file(const std::string& path) {
  KVT_CHECK(is_file(path), "index file ", path, " does not exist");
  // faiss trusts the file: a corrupt neighbour id or list size would crash a later search, and
  // some damaged files crash faiss's reader itself. Read and validated in a child process.
  return read_validated_index(path);
}

}  // namespace

KeyIndex KeyIndex::load(PendingIndexRead& read, const float* keys, int64_t n, int64_t dim,
                        IndexConfig search_params, StoredKeys* stored) {
  return load_read(read.get(), read.path(), keys, n, dim, std::move(search_params), stored);
}

KeyIndex KeyIndex::load(const std::string& path, const float* keys, int64_t n, int64_t dim,
                        IndexConfig search_params, StoredKeys* stored) {
  return load_read(read_index_file(path), path, keys, n, dim, std::move(search_params), stored);
}

KeyIndex KeyIndex::load_read(std::unique_ptr<faiss::Index> index, const std::string& path,
                             const float* keys, int64_t n, int64_t dim, IndexConfig search_params,
                             StoredKeys* stored) {
  KVT_CHECK(index->d == dim, "index ", path, " has dimension ", index->d,
            " but the bank's keys have ", dim, ": it belongs to another bank (rebuild it)");
  KVT_CHECK(index->ntotal == n, "index ", path, " holds ", index->ntotal,
            " vectors but the bank has ", n,
            " keys: it is stale or belongs to another bank (rebuild it)");
  // L2 only for the inverted multi-index, which kvtune builds in L2 (is_multi_index above).
  KVT_CHECK(
      index->metric_type == faiss::METRIC_INNER_PRODUCT ||
          (index->metric_type == faiss::METRIC_L2 && multi_index_quantizer(index.get()) != nullptr),
      "index ", path,
      " does not use the inner-product metric that kvtune's unit keys need (rebuild it)");
  if (stored != nullptr) {
    *stored = !stores_exact_vectors(*index)      ? StoredKeys::kUnknown
              : keys_match(*index, keys, n, dim) ? StoredKeys::kMatch
                                                 : StoredKeys::kDiffer;
  }
  if (dynamic_cast<faiss::IndexFlat*>(index.get()) != nullptr) {
    search_params.factory = "Flat";
    KeyIndex flat(dim, search_params);
    flat.build(keys, n);
    return flat;
  }
  if (search_params.is_flat()) search_params.factory = "(loaded from " + path + ")";
  KeyIndex loaded(dim, search_params);
  loaded.n_ = n;
  loaded.index_ = std::move(index);
  loaded.apply_search_params();
  return loaded;
}

}  // namespace kvtune

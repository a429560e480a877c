#include "index/impl/ivf_flat_search.h"

#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <limits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "common/check.h"
#include "kernels/dot_products.h"

namespace kvtune::impl {
namespace {

// Queries per chunk: a list probed by the chunk is read once per chunk, so larger chunks read
// the bank fewer times; each thread takes whole chunks. The chunks depend on nq alone, never on
// the thread count: without AVX-512 a list is scored by a BLAS product, whose values depend on
// its number of rows (OpenBLAS's edge kernels), so chunks cut by the thread count gave other
// scores on 1 and 2 threads (measured on an AMD EPYC, AVX2). nq / kChunks queries per chunk
// keeps up to kChunks threads busy on small batches.
constexpr int64_t kMinChunk = 64;
constexpr int64_t kMaxChunk = 1024;
constexpr int64_t kChunks = 4;
// Below this mean list size a product per list costs more in calls than it saves: faiss's own
// scan is left to such indexes (many small lists, as with IVF65536 over 2^20 keys).
constexpr int64_t kMinMeanListSize = 64;

struct Candidate {
  float score;
  int64_t id;
};

// a ranks before b: higher score, then the smaller id.
inline bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// The k best candidates of one query. Candidates at or above the floor are appended to a buffer;
// when it holds 2k, it is cut back to its best k (nth_element) and the floor rises to the k-th
// best score. Appends are sequential writes, and each cut is linear in 2k, where a binary heap
// of k would miss the cache on every sift of every query the chunk interleaves. The result is
// the same: the k best under (score descending, id ascending), a total order.
class TopK {
 public:
  void reset(int64_t k) {
    k_ = static_cast<size_t>(k);
    buf_.clear();
    buf_.reserve(2 * k_);
    floor_ = -std::numeric_limits<float>::infinity();
  }
  // score >= floor() (the caller's test).
  void offer(float score, int64_t id) {
    buf_.push_back({score, id});
    if (buf_.size() >= 2 * k_) cut();
  }
  // The score a candidate must reach: the k-th best at the last cut (-inf before).
  float floor() const { return floor_; }
  void write(float* scores, int64_t* ids) {
    if (buf_.size() > k_) cut();
    std::sort(buf_.begin(), buf_.end(), better);
    for (size_t i = 0; i < k_; ++i) {
      const bool have = i < buf_.size();
      scores[i] = have ? buf_[i].score : -std::numeric_limits<float>::infinity();
      ids[i] = have ? buf_[i].id : -1;
    }
  }

 private:
  void cut() {
    std::nth_element(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(k_ - 1), buf_.end(),
                     better);
    buf_.resize(k_);
    floor_ = buf_[k_ - 1].score;
  }

  size_t k_ = 0;
  std::vector<Candidate> buf_;
  float floor_ = 0;
};

void search_chunk(const faiss::IndexIVFFlat& index, const float* queries, const int64_t* probes,
                  int64_t nprobe, int64_t first, int64_t count, int64_t k, float* scores,
                  int64_t* ids) {
  const int64_t d = index.d, nlist = static_cast<int64_t>(index.nlist);
  const faiss::InvertedLists& lists = *index.invlists;
  // The chunk's queries by list (counting sort): users[start[l] .. start[l + 1]) probe list l.
  std::vector<int64_t> start(static_cast<size_t>(nlist + 1), 0), users(count * nprobe);
  for (int64_t i = 0; i < count * nprobe; ++i) {
    const int64_t l = probes[first * nprobe + i];
    if (l >= 0) ++start[l + 1];
  }
  for (int64_t l = 0; l < nlist; ++l) start[l + 1] += start[l];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t q = 0; q < count; ++q) {
    for (int64_t p = 0; p < nprobe; ++p) {
      const int64_t l = probes[(first + q) * nprobe + p];
      if (l >= 0) users[fill[l]++] = q;
    }
  }
  std::vector<TopK> top(static_cast<size_t>(count));
  for (auto& t : top) t.reset(k);
  std::vector<float> gathered, products;
  // A list against its few queries: the register-tiled kernel reads the list where it lies,
  // where a BLAS product would first pack it (most of its time at tens of queries per list).
  const bool tiled = kernels::dot_products_tiled();
  for (int64_t l = 0; l < nlist; ++l) {
    const int64_t m = start[l + 1] - start[l];
    const int64_t size = static_cast<int64_t>(lists.list_size(l));
    if (m == 0 || size == 0) continue;
    const float* codes = reinterpret_cast<const float*>(lists.get_codes(l));
    const int64_t* list_ids = lists.get_ids(l);
    gathered.resize(static_cast<size_t>(m * d));
    for (int64_t u = 0; u < m; ++u) {
      const float* q = queries + (first + users[start[l] + u]) * d;
      std::copy(q, q + d, gathered.begin() + u * d);
    }
    products.resize(static_cast<size_t>(m * size));
    if (tiled) {
      kernels::dot_products_f32(gathered.data(), m, codes, size, d, products.data(), size);
    } else {
      const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
      const auto qs = torch::from_blob(gathered.data(), {m, d}, opts);
      const auto ks = torch::from_blob(const_cast<float*>(codes), {size, d}, opts);
      auto out = torch::from_blob(products.data(), {m, size}, opts);
      torch::mm_out(out, qs, ks.t());
    }
    for (int64_t u = 0; u < m; ++u) {
      TopK& t = top[users[start[l] + u]];
      const float* row = products.data() + u * size;
      float floor = t.floor();
      int64_t j = 0;
      // Once the query has k candidates most products fall below its floor: a block of 16 is
      // skipped on one vectorized maximum, and only a block that holds a candidate is walked.
      for (; j + 16 <= size; j += 16) {
        float block_max = row[j];
#pragma omp simd reduction(max : block_max)
        for (int64_t i = 0; i < 16; ++i) block_max = std::max(block_max, row[j + i]);
        if (block_max < floor) continue;
        for (int64_t i = j; i < j + 16; ++i) {
          if (row[i] < floor) continue;
          t.offer(row[i], list_ids[i]);
          floor = t.floor();
        }
      }
      for (; j < size; ++j) {
        if (row[j] < floor) continue;
        t.offer(row[j], list_ids[j]);
        floor = t.floor();
      }
    }
  }
  for (int64_t q = 0; q < count; ++q) top[q].write(scores + (first + q) * k, ids + (first + q) * k);
}

}  // namespace

bool ivf_flat_searchable(const faiss::IndexIVFFlat& index) {
  // Exactly IndexIVFFlat: a subclass (IndexIVFFlatDedup) stores its lists differently.
  return typeid(index) == typeid(faiss::IndexIVFFlat) &&
         index.metric_type == faiss::METRIC_INNER_PRODUCT && index.quantizer != nullptr &&
         dynamic_cast<const faiss::ArrayInvertedLists*>(index.invlists) != nullptr &&
         index.code_size == index.d * sizeof(float) && index.nlist > 0 &&
         index.ntotal >= kMinMeanListSize * static_cast<int64_t>(index.nlist);
}

void ivf_flat_search(const faiss::IndexIVFFlat& index, const float* queries, int64_t nq, int64_t k,
                     float* scores, int64_t* ids) {
  KVT_CHECK(ivf_flat_searchable(index), "internal error: this IVF index needs faiss's own search");
  KVT_CHECK(k > 0, "k must be positive, got ", k);
  if (nq == 0) return;
  const int64_t nprobe =
      std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(index.nprobe), index.nlist));
  // The coarse assignment, as faiss's own search makes it (the quantizer's BLAS search).
  std::vector<float> coarse(static_cast<size_t>(nq * nprobe));
  std::vector<int64_t> probes(static_cast<size_t>(nq * nprobe));
  index.quantizer->search(nq, queries, nprobe, coarse.data(), probes.data());
  const int64_t chunk = std::clamp<int64_t>((nq + kChunks - 1) / kChunks, kMinChunk, kMaxChunk);
  const int64_t chunks = (nq + chunk - 1) / chunk;
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    try {
      const int64_t first = c * chunk;
      search_chunk(index, queries, probes.data(), nprobe, first, std::min(chunk, nq - first), k,
                   scores, ids);
    } catch (...) {
#pragma omp critical(kvtune_ivf_flat_search_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace kvtune::impl

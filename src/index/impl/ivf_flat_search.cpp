#include "index/impl/ivf_flat_search.h"

#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "common/check.h"

namespace kvtune::impl {
namespace {

// Queries per chunk: a list probed by the chunk is read once per chunk, so larger chunks read
// the bank fewer times; each thread takes whole chunks.
constexpr int64_t kMinChunk = 64;
constexpr int64_t kMaxChunk = 1024;
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

// The k best candidates of one query: a binary heap with the worst of them on top.
class TopK {
 public:
  void reset(int64_t k) {
    k_ = static_cast<size_t>(k);
    heap_.clear();
    heap_.reserve(k_);
  }
  void offer(float score, int64_t id) {
    const Candidate c{score, id};
    if (heap_.size() < k_) {
      heap_.push_back(c);
      sift_up(heap_.size() - 1);
    } else if (better(c, heap_[0])) {
      sift_down(c);
    }
  }
  // The threshold a candidate must reach once the heap is full (-inf before).
  float floor() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_[0].score;
  }
  void write(float* scores, int64_t* ids) {
    std::sort(heap_.begin(), heap_.end(), better);
    for (size_t i = 0; i < k_; ++i) {
      const bool have = i < heap_.size();
      scores[i] = have ? heap_[i].score : -std::numeric_limits<float>::infinity();
      ids[i] = have ? heap_[i].id : -1;
    }
  }

 private:
  // Worse candidates toward the root.
  void sift_up(size_t i) {
    const Candidate c = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!better(heap_[parent], c)) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = c;
  }
  // Replaces the root by c.
  void sift_down(const Candidate& c) {
    const size_t n = heap_.size();
    size_t i = 0;
    for (;;) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && better(heap_[child], heap_[child + 1])) ++child;
      if (!better(c, heap_[child])) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = c;
  }

  size_t k_ = 0;
  std::vector<Candidate> heap_;
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
    const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
    const auto qs = torch::from_blob(gathered.data(), {m, d}, opts);
    const auto ks = torch::from_blob(const_cast<float*>(codes), {size, d}, opts);
    auto out = torch::from_blob(products.data(), {m, size}, opts);
    torch::mm_out(out, qs, ks.t());
    for (int64_t u = 0; u < m; ++u) {
      TopK& t = top[users[start[l] + u]];
      const float* row = products.data() + u * size;
      float floor = t.floor();
      for (int64_t j = 0; j < size; ++j) {
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
  const int threads = std::max(1, omp_get_max_threads());
  const int64_t chunk = std::clamp<int64_t>((nq + threads - 1) / threads, kMinChunk, kMaxChunk);
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

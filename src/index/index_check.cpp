#include "index/index_check.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/invlists/InvertedLists.h>

#include <cstring>
#include <typeinfo>
#include <vector>

#include "common/check.h"

namespace kvtune {
namespace {

// The largest search breadths accepted from a file: larger ones make one search allocate
// gigabytes (efSearch-sized heaps), and no real index needs them.
constexpr int64_t kMaxEfSearch = int64_t{1} << 20;

std::string type_name(const faiss::Index& index) {
  return typeid(index).name();
}

void check_common(const faiss::Index& index, const std::string& what) {
  KVT_CHECK(index.d > 0 && index.d <= (int64_t{1} << 20), what, ": dimension ", index.d,
            " is out of range (1 .. 2^20)");
  KVT_CHECK(index.ntotal >= 0 && index.ntotal < (int64_t{1} << 40), what, ": ntotal ", index.ntotal,
            " is out of range");
}

void check_flat_codes(const faiss::IndexFlatCodes& flat, const std::string& what) {
  check_common(flat, what);
  KVT_CHECK(flat.code_size == static_cast<size_t>(flat.d) * sizeof(float), what,
            ": flat code size ", flat.code_size, " is not 4 * d = ", 4 * flat.d);
  KVT_CHECK(flat.codes.size() == static_cast<size_t>(flat.ntotal) * flat.code_size, what,
            ": the flat storage holds ", flat.codes.size(), " bytes, expected ntotal * 4 * d = ",
            static_cast<size_t>(flat.ntotal) * flat.code_size);
}

void check_hnsw(const faiss::IndexHNSW& index, const std::string& what) {
  check_common(index, what);
  const faiss::HNSW& h = index.hnsw;
  const int64_t n = index.ntotal;
  const auto fail = [&](const auto&... why) {
    KVT_THROW(what, ": corrupt HNSW graph: ", why..., " (rebuild the index)");
  };
  if (index.storage == nullptr) fail("no vector storage");
  validate_faiss_index(*index.storage, what + " (HNSW storage)");
  if (index.storage->ntotal != n || index.storage->d != index.d) {
    fail("the storage holds ", index.storage->ntotal, " vectors of dim ", index.storage->d,
         ", the graph ", n, " of dim ", index.d);
  }
  const auto& cum = h.cum_nneighbor_per_level;
  if (cum.size() < 2 || cum.size() > 64 || cum[0] != 0) {
    fail("cum_nneighbor_per_level has ", cum.size(), " entries starting at ",
         cum.empty() ? -1 : cum[0]);
  }
  for (size_t l = 1; l < cum.size(); ++l) {
    if (cum[l] < cum[l - 1] || cum[l] > (1 << 16)) fail("cum_nneighbor_per_level is not sorted");
  }
  const int64_t max_levels = static_cast<int64_t>(cum.size()) - 1;
  if (static_cast<int64_t>(h.levels.size()) != n) {
    fail("levels has ", h.levels.size(), " entries for ", n, " vectors");
  }
  if (static_cast<int64_t>(h.offsets.size()) != n + 1 || h.offsets[0] != 0) {
    fail("offsets has ", h.offsets.size(), " entries for ", n, " vectors");
  }
  int top = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int lv = h.levels[i];
    if (lv < 1 || lv > max_levels)
      fail("vector ", i, " has level ", lv, " (1 .. ", max_levels, ")");
    top = std::max(top, lv);
    if (h.offsets[i + 1] < h.offsets[i] ||
        h.offsets[i + 1] - h.offsets[i] != static_cast<size_t>(cum[lv])) {
      fail("the neighbour offsets of vector ", i, " do not match its level ", lv);
    }
  }
  if (h.neighbors.size() != h.offsets[n]) {
    fail("neighbors has ", h.neighbors.size(), " entries, the offsets need ", h.offsets[n]);
  }
  for (size_t j = 0; j < h.neighbors.size(); ++j) {
    const int64_t v = h.neighbors[j];
    if (v < -1 || v >= n) fail("neighbour id ", v, " (entry ", j, ") is not in [-1, ", n, ")");
  }
  if (n == 0) {
    if (h.entry_point != -1 && h.entry_point != 0)
      fail("entry point ", h.entry_point, " in an empty graph");
  } else {
    if (h.entry_point < 0 || h.entry_point >= n)
      fail("entry point ", h.entry_point, " is not a vector");
    if (h.max_level != top - 1 || h.levels[h.entry_point] - 1 != h.max_level) {
      fail("max_level ", h.max_level, " does not match the levels (top level ", top - 1,
           ", entry point's ", h.levels[h.entry_point] - 1, ")");
    }
  }
  if (h.efSearch < 1 || h.efSearch > kMaxEfSearch || h.efConstruction < 1 ||
      h.efConstruction > kMaxEfSearch || h.upper_beam < 1 || h.upper_beam > kMaxEfSearch) {
    fail("search parameters efSearch ", h.efSearch, ", efConstruction ", h.efConstruction,
         ", upper_beam ", h.upper_beam, " are out of range (1 .. ", kMaxEfSearch, ")");
  }
}

void check_pq(const faiss::ProductQuantizer& pq, int64_t d, const std::string& what) {
  const auto fail = [&](const auto&... why) {
    KVT_THROW(what, ": corrupt product quantizer: ", why..., " (rebuild the index)");
  };
  if (pq.d != static_cast<size_t>(d) || pq.M == 0 || pq.dsub * pq.M != pq.d || pq.nbits == 0 ||
      pq.nbits > 16 || pq.ksub != (size_t{1} << pq.nbits) ||
      pq.code_size != (pq.M * pq.nbits + 7) / 8) {
    fail("d ", pq.d, ", M ", pq.M, ", dsub ", pq.dsub, ", nbits ", pq.nbits, ", ksub ", pq.ksub,
         ", code size ", pq.code_size, " are inconsistent");
  }
  if (pq.centroids.size() != pq.d * pq.ksub) {
    fail("the centroid table holds ", pq.centroids.size(),
         " floats, expected d * ksub = ", pq.d * pq.ksub);
  }
}

// The coarse quantizer of an inverted multi-index: its ntotal cells are the products of the
// sub-quantizers' centroids, ksub^M of them.
void check_multi_index_quantizer(const faiss::MultiIndexQuantizer& q, const std::string& what) {
  check_common(q, what);
  check_pq(q.pq, q.d, what);
  int64_t cells = 1;
  for (size_t m = 0; m < q.pq.M && cells <= q.ntotal; ++m) cells *= static_cast<int64_t>(q.pq.ksub);
  KVT_CHECK(cells == q.ntotal, what, ": corrupt multi-index quantizer: ", q.ntotal,
            " cells, not ksub^M = ", q.pq.ksub, "^", q.pq.M, " (rebuild the index)");
}

void check_ivf(const faiss::IndexIVF& ivf, const std::string& what) {
  check_common(ivf, what);
  const int64_t n = ivf.ntotal;
  const auto fail = [&](const auto&... why) {
    KVT_THROW(what, ": corrupt IVF index: ", why..., " (rebuild the index)");
  };
  if (ivf.quantizer == nullptr) fail("no coarse quantizer");
  validate_faiss_index(*ivf.quantizer, what + " (IVF quantizer)");
  if (ivf.nlist == 0 || ivf.nlist > (size_t{1} << 28)) fail(ivf.nlist, " lists");
  if (ivf.metric_type != faiss::METRIC_INNER_PRODUCT &&
      !(ivf.metric_type == faiss::METRIC_L2 &&
        dynamic_cast<const faiss::MultiIndexQuantizer*>(ivf.quantizer) != nullptr)) {
    fail("metric ", static_cast<int>(ivf.metric_type),
         " (kvtune's IVF indexes use the inner product; an inverted multi-index, L2)");
  }
  if (ivf.quantizer->ntotal != static_cast<int64_t>(ivf.nlist) || ivf.quantizer->d != ivf.d) {
    fail("the quantizer holds ", ivf.quantizer->ntotal, " centroids of dim ", ivf.quantizer->d,
         " for ", ivf.nlist, " lists of dim ", ivf.d);
  }
  if (ivf.nprobe < 1 || ivf.nprobe > ivf.nlist)
    fail("nprobe ", ivf.nprobe, " is not in [1, ", ivf.nlist, "]");
  const auto* lists = dynamic_cast<const faiss::ArrayInvertedLists*>(ivf.invlists);
  if (lists == nullptr)
    fail("the inverted lists are not stored in the file (kvtune reads only in-memory lists)");
  if (lists->nlist != ivf.nlist || lists->codes.size() != ivf.nlist ||
      lists->ids.size() != ivf.nlist) {
    fail("the inverted lists are ", lists->nlist, " (", lists->codes.size(), " code, ",
         lists->ids.size(), " id vectors) for ", ivf.nlist, " lists");
  }
  if (lists->code_size != ivf.code_size || ivf.code_size == 0) {
    fail("code size ", lists->code_size, " of the lists is not the index's ", ivf.code_size);
  }
  if (ivf.direct_map.type != faiss::DirectMap::NoMap) {
    fail("a direct map is stored (kvtune never writes one)");
  }
  std::vector<bool> seen(static_cast<size_t>(n), false);
  int64_t total = 0;
  for (size_t l = 0; l < ivf.nlist; ++l) {
    const auto& ids = lists->ids[l];
    if (lists->codes[l].size() != ids.size() * lists->code_size) {
      fail("list ", l, " holds ", ids.size(), " ids but ", lists->codes[l].size(),
           " bytes of codes (code size ", lists->code_size, ")");
    }
    total += static_cast<int64_t>(ids.size());
    if (total > n) fail("the lists hold more than ntotal = ", n, " entries");
    for (const auto id : ids) {
      if (id < 0 || id >= n) fail("list ", l, " holds id ", id, ", not in [0, ", n, ")");
      if (seen[id]) fail("id ", id, " is in the lists twice");
      seen[id] = true;
    }
  }
  if (total != n) fail("the lists hold ", total, " entries but ntotal is ", n);
  if (const auto* flat = dynamic_cast<const faiss::IndexIVFFlat*>(&ivf)) {
    if (flat->code_size != sizeof(float) * static_cast<size_t>(ivf.d)) {
      fail("IVF-Flat code size ", flat->code_size, " is not 4 * d");
    }
  } else if (const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf)) {
    check_pq(pq->pq, ivf.d, what);
    if (pq->code_size != pq->pq.code_size) fail("code size ", pq->code_size, " is not the PQ's");
  } else {
    KVT_THROW(what, ": IVF index type ", type_name(ivf),
              " is not one kvtune can check (IVF-Flat, IVF-PQ): remove the file to "
              "rebuild the index from the bank");
  }
}

}  // namespace

void validate_faiss_index(const faiss::Index& index, const std::string& what) {
  if (const auto* flat = dynamic_cast<const faiss::IndexFlat*>(&index)) {
    check_flat_codes(*flat, what);
  } else if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(&index)) {
    check_hnsw(*hnsw, what);
  } else if (const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index)) {
    check_ivf(*ivf, what);
  } else if (const auto* imi = dynamic_cast<const faiss::MultiIndexQuantizer*>(&index)) {
    check_multi_index_quantizer(*imi, what);
  } else {
    KVT_THROW(what, ": index type ", type_name(index),
              " is not one kvtune can check (Flat, HNSW, IVF): remove the file to rebuild the "
              "index from the bank");
  }
}

bool stores_exact_vectors(const faiss::Index& index) {
  if (dynamic_cast<const faiss::IndexFlat*>(&index)) return true;
  if (const auto* h = dynamic_cast<const faiss::IndexHNSW*>(&index)) {
    return h->storage != nullptr && dynamic_cast<const faiss::IndexFlat*>(h->storage) != nullptr;
  }
  return dynamic_cast<const faiss::IndexIVFFlat*>(&index) != nullptr;
}

bool keys_match(const faiss::Index& index, const float* keys, int64_t n, int64_t d) {
  if (index.ntotal != n || index.d != d) return false;
  const size_t row = static_cast<size_t>(d) * sizeof(float);
  const faiss::IndexFlat* flat = dynamic_cast<const faiss::IndexFlat*>(&index);
  if (const auto* h = dynamic_cast<const faiss::IndexHNSW*>(&index)) {
    flat = dynamic_cast<const faiss::IndexFlat*>(h->storage);
  }
  if (flat != nullptr) {
    return flat->codes.size() == n * row &&
           (n == 0 || std::memcmp(flat->codes.data(), keys, n * row) == 0);
  }
  const auto* ivf = dynamic_cast<const faiss::IndexIVFFlat*>(&index);
  const auto* lists = ivf ? dynamic_cast<const faiss::ArrayInvertedLists*>(ivf->invlists) : nullptr;
  if (lists == nullptr) return false;
  for (size_t l = 0; l < lists->nlist; ++l) {
    const auto& ids = lists->ids[l];
    for (size_t j = 0; j < ids.size(); ++j) {
      if (std::memcmp(lists->codes[l].data() + j * row, keys + ids[j] * d, row) != 0) return false;
    }
  }
  return true;
}

}  // namespace kvtune

// Inner-product search of an IVF index with flat codes (faiss::IndexIVFFlat) by blocked
// products: for a chunk of queries, every inverted list they probe is read once and scored
// against all of the chunk's queries that probe it in one pass (kernels::dot_products_f32, or a
// BLAS product on CPUs without AVX-512), instead of faiss's scan of one list for one query at a
// time (a scalar loop in a faiss built without AVX2, as Debian's is). The candidates are the
// same as faiss's (the same coarse assignment, the same lists); scores differ from faiss's by
// float32 rounding of the products. docs/design.md, "Search".
#pragma once

#include <cstdint>

namespace faiss {
struct IndexIVFFlat;
}

namespace kvtune::impl {

// True when `index` can be searched by ivf_flat_search: exactly IndexIVFFlat, inner product,
// lists in memory, and at least 64 keys per list on average (faiss's scan is better below).
bool ivf_flat_searchable(const faiss::IndexIVFFlat& index);

// For each of nq queries [nq, d], the k best of the keys in its index.nprobe nearest lists, best
// first, ties to the smaller id; fewer than k candidates leave id -1 and score -inf. Parallel
// over chunks of queries (OpenMP); the same result for any number of threads.
void ivf_flat_search(const faiss::IndexIVFFlat& index, const float* queries, int64_t nq, int64_t k,
                     float* scores, int64_t* ids);

}  // namespace kvtune::impl

// Structural checks of a faiss index read from a file, before anything searches it: faiss's
// readers trust the file, and a corrupt neighbour id or list size makes a later search read out
// of bounds (a crash, or wrong neighbours). docs/reliability.md lists what is checked.
#pragma once

#include <cstdint>
#include <string>

namespace faiss {
struct Index;
}

namespace kvtune {

// Throws kvtune::Error naming `what` (the file) and the first inconsistency found: sizes that
// disagree with ntotal or d, HNSW neighbour ids out of range or levels/offsets inconsistent, IVF
// list sizes or ids inconsistent with ntotal, PQ tables of the wrong size, or an index type
// kvtune cannot check (it is refused: rebuild it from the bank). Runs in O(size of the index).
void validate_faiss_index(const faiss::Index& index, const std::string& what);

// True when `index` stores every vector exactly (Flat, HNSW over Flat, IVF-Flat); then
// `keys_match` compares the stored vectors with `keys` [n, d] (row i must be the vector with
// id i). False for lossy codes (PQ, SQ), whose vectors cannot be compared.
bool stores_exact_vectors(const faiss::Index& index);
bool keys_match(const faiss::Index& index, const float* keys, int64_t n, int64_t d);

}  // namespace kvtune

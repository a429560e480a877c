// Spherical k-means of query vectors: where new bank keys go (a domain bank's initial keys, the
// slots `kvtune remember` writes when asked for fewer slots than queries).
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace kvtune {

// points [n, d] float32 (unit rows) -> k unit centroids [k, d] float32, k <= n. faiss Clustering
// with the inner product, 20 iterations, at most 64 points per centroid (a deterministic
// sample beyond that); deterministic for a seed.
torch::Tensor spherical_kmeans(const torch::Tensor& points, int64_t k, uint64_t seed);

}  // namespace kvtune

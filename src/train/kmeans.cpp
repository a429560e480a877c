#include "train/kmeans.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

#include "common/check.h"

namespace kvtune {

torch::Tensor spherical_kmeans(const torch::Tensor& points, int64_t k, uint64_t seed) {
  KVT_CHECK(points.dim() == 2 && points.scalar_type() == torch::kFloat32,
            "spherical k-means takes float32 points [n, d]");
  KVT_CHECK(k >= 1 && k <= points.size(0), "spherical k-means: ", k, " centroids from ",
            points.size(0), " points (need 1 <= centroids <= points)");
  const auto q = points.detach().contiguous();
  const int64_t d = q.size(1);
  faiss::ClusteringParameters cp;
  cp.niter = 20;
  cp.spherical = true;
  cp.seed = static_cast<int>(seed);
  cp.max_points_per_centroid = 64;
  faiss::Clustering clustering(static_cast<int>(d), static_cast<int>(k), cp);
  faiss::IndexFlatIP assign(d);
  clustering.train(q.size(0), q.data_ptr<float>(), assign);
  auto keys = torch::from_blob(clustering.centroids.data(), {k, d}, torch::kFloat32).clone();
  return (keys / keys.norm(2, 1, true).clamp_min(1e-12)).contiguous();
}

}  // namespace kvtune

// Estimators of softmax attention over banks, built by name (one factory, like faiss's).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attention/knn_attention.h"

namespace kvtune {

class Estimator {
 public:
  virtual ~Estimator() = default;
  virtual std::string name() const = 0;
  // q_unit [R, dk] of unit rows. Returns output [R, dv], ids [R, k], scores [R, k].
  virtual KnnAttentionResult forward(const torch::Tensor& q_unit,
                                     const std::vector<BankView>& banks,
                                     const KnnAttentionOptions& options) const = 0;
};

// Throws kvtune::Error listing the valid names when `name` is unknown.
std::unique_ptr<Estimator> make_estimator(const std::string& name);
std::vector<std::string> estimator_names();

}  // namespace kvtune

// Read access to the rows of several banks by global id, in double, for the sampled estimators
// (lazy Gumbel, top-k + tail) and the sampled backward: scores of arbitrary ids, weighted sums
// of key and value rows, dot products with value rows. Holds
// raw pointers (no torch calls per row, safe inside OpenMP loops) and references to the
// tensors so they stay alive.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"
#include "attention/knn_attention.h"
#include "attention/retrieval.h"

namespace kvtune::impl {

class BankRows {
 public:
  // Banks already checked (check_attention_inputs): float32 or float64, contiguous.
  explicit BankRows(const std::vector<BankView>& banks) : offsets_(bank_offsets(banks)) {
    for (const auto& b : banks) {
      keys_.push_back(b.keys.detach());
      values_.push_back(b.values.detach());
      total_ += b.size();
    }
    dk_ = keys_[0].size(1);
    dv_ = values_[0].size(1);
  }

  int64_t total() const { return total_; }
  int64_t dk() const { return dk_; }
  int64_t dv() const { return dv_; }

  // scale * <q, k_id> in double; -inf for an id outside [0, total).
  double score(const double* q, int64_t id, double scale) const {
    const auto [b, row] = locate_global_id(offsets_, total_, id);
    if (b < 0) return -std::numeric_limits<double>::infinity();
    const auto& keys = keys_[b];
    double s = 0;
    if (keys.scalar_type() == torch::kFloat64) {
      const double* k = keys.data_ptr<double>() + row * dk_;
      for (int64_t j = 0; j < dk_; ++j) s += q[j] * k[j];
    } else {
      const float* k = keys.data_ptr<float>() + row * dk_;
      for (int64_t j = 0; j < dk_; ++j) s += q[j] * static_cast<double>(k[j]);
    }
    return scale * s;
  }

  // <x, v_id> in double (id must be valid).
  double value_dot(int64_t id, const double* x) const {
    const auto [b, row] = locate_global_id(offsets_, total_, id);
    const auto& values = values_[b];
    double s = 0;
    if (values.scalar_type() == torch::kFloat64) {
      const double* v = values.data_ptr<double>() + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) s += x[j] * v[j];
    } else {
      const float* v = values.data_ptr<float>() + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) s += x[j] * static_cast<double>(v[j]);
    }
    return s;
  }

  // out[dk] += w * k_id (id must be valid).
  void add_key(int64_t id, double w, double* out) const {
    const auto [b, row] = locate_global_id(offsets_, total_, id);
    const auto& keys = keys_[b];
    if (keys.scalar_type() == torch::kFloat64) {
      const double* k = keys.data_ptr<double>() + row * dk_;
      for (int64_t j = 0; j < dk_; ++j) out[j] += w * k[j];
    } else {
      const float* k = keys.data_ptr<float>() + row * dk_;
      for (int64_t j = 0; j < dk_; ++j) out[j] += w * static_cast<double>(k[j]);
    }
  }

  // out[dv] += w * v_id (id must be valid).
  void add_value(int64_t id, double w, double* out) const {
    const auto [b, row] = locate_global_id(offsets_, total_, id);
    const auto& values = values_[b];
    if (values.scalar_type() == torch::kFloat64) {
      const double* v = values.data_ptr<double>() + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) out[j] += w * v[j];
    } else {
      const float* v = values.data_ptr<float>() + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) out[j] += w * static_cast<double>(v[j]);
    }
  }

 private:
  std::vector<torch::Tensor> keys_, values_;
  std::vector<int64_t> offsets_;
  int64_t total_ = 0, dk_ = 0, dv_ = 0;
};

}  // namespace kvtune::impl

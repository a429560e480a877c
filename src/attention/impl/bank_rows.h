// Read access to the rows of several banks by global id, for the sampled estimators (lazy
// Gumbel, top-k + tail) and the sampled backward: scores of arbitrary ids, weighted sums of key
// and value rows, dot products with value rows. Raw pointers taken once at construction (no
// torch call per row, safe inside OpenMP loops), with references to the tensors so they stay
// alive.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"
#include "attention/knn_attention.h"
#include "attention/retrieval.h"
#include "kernels/dot.h"

namespace kvtune::impl {

class BankRows {
 public:
  // Banks already checked (check_attention_inputs): float32 or float64, contiguous.
  explicit BankRows(const std::vector<BankView>& banks) : offsets_(bank_offsets(banks)) {
    for (const auto& b : banks) {
      keys_.push_back(b.keys.detach());
      values_.push_back(b.values.detach());
      Bank p;
      p.f64 = b.keys.scalar_type() == torch::kFloat64;
      p.keys = b.keys.data_ptr();
      p.values = b.values.data_ptr();
      p.offset = total_;
      banks_.push_back(p);
      total_ += b.size();
    }
    dk_ = keys_[0].size(1);
    dv_ = values_[0].size(1);
  }

  int64_t total() const { return total_; }
  int64_t dk() const { return dk_; }
  int64_t dv() const { return dv_; }

  // scores[i] = scale * <q, k_ids[i]> for i < count, -inf for an id outside [0, total): the one
  // score routine of the sampled estimators and the sampled backward, for the top-k and the tail
  // alike, so a tail score and the top-k's minimum always come from the same arithmetic. float64
  // banks are scored in double; float32 banks in float32 with kernels::dot_f32 (SIMD), against
  // q rounded to float32 (q32, dk values).
  void score_ids(const double* q, const float* q32, const int64_t* ids, int64_t count, double scale,
                 double* scores) const {
    const bool one_bank = banks_.size() == 1;
    for (int64_t i = 0; i < count; ++i) {
      // Gathered rows are a cache miss each: ask for the row kPrefetch ids ahead, so that
      // several misses are in flight at once.
      if (i + kPrefetch < count) prefetch_key(ids[i + kPrefetch]);
      const int64_t id = ids[i];
      if (id < 0 || id >= total_) {
        scores[i] = -std::numeric_limits<double>::infinity();
        continue;
      }
      scores[i] = score_valid(one_bank ? banks_[0] : bank_of(id), id, q, q32, scale);
    }
  }

  // score_ids for each of R query rows q [R, dk] against its own ids [R, k]: scores [R, k].
  // Parallel over rows (OpenMP).
  void score_rows(const double* q, int64_t R, const int64_t* ids, int64_t k, double scale,
                  double* scores) const {
#pragma omp parallel
    {
      std::vector<float> q32(static_cast<size_t>(dk_));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        std::copy(q + r * dk_, q + (r + 1) * dk_, q32.begin());
        score_ids(q + r * dk_, q32.data(), ids + r * k, k, scale, scores + r * k);
      }
    }
  }

  // score_ids of one valid id: the same arithmetic.
  double score_id(const double* q, const float* q32, int64_t id, double scale) const {
    return score_valid(banks_.size() == 1 ? banks_[0] : bank_of(id), id, q, q32, scale);
  }

  // Asks for the key row of `id` (ignored when outside [0, total)): gathered rows are a cache
  // miss each, so callers ask a few ids ahead to keep several misses in flight.
  void prefetch_key(int64_t id) const {
    if (id < 0 || id >= total_) return;
    const Bank& b = banks_.size() == 1 ? banks_[0] : bank_of(id);
    const int64_t bytes = dk_ * (b.f64 ? 8 : 4);
    const char* row = static_cast<const char*>(b.keys) + (id - b.offset) * bytes;
    for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(row + at);
  }

  // score_ids for one query row, as a ScoreFn-shaped callable (it owns q's float32 copy).
  std::function<void(const int64_t*, int64_t, double*)> scorer(const double* q,
                                                               double scale) const {
    auto q32 = std::make_shared<std::vector<float>>(q, q + dk_);
    return [this, q, q32, scale](const int64_t* ids, int64_t count, double* scores) {
      score_ids(q, q32->data(), ids, count, scale, scores);
    };
  }

  // <x, v_id> in double (id must be valid).
  double value_dot(int64_t id, const double* x) const {
    const Bank& b = bank_of(id);
    const int64_t row = id - b.offset;
    double s = 0;
    if (b.f64) {
      const double* v = static_cast<const double*>(b.values) + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) s += x[j] * v[j];
    } else {
      const float* v = static_cast<const float*>(b.values) + row * dv_;
      for (int64_t j = 0; j < dv_; ++j) s += x[j] * static_cast<double>(v[j]);
    }
    return s;
  }

  // out[dk] += w * k_id (id must be valid).
  void add_key(int64_t id, double w, double* out) const {
    add_row(id, w, out, true);
  }
  // out[dv] += w * v_id (id must be valid).
  void add_value(int64_t id, double w, double* out) const {
    add_row(id, w, out, false);
  }

 private:
  static constexpr int64_t kPrefetch = 8;

  struct Bank {
    const void* keys = nullptr;
    const void* values = nullptr;
    int64_t offset = 0;
    bool f64 = false;
  };

  // scale * <q, k_id> for a valid id of bank b: in double for float64 keys, in float32 with
  // kernels::dot_f32 (SIMD) against q32 for float32 keys.
  double score_valid(const Bank& b, int64_t id, const double* q, const float* q32,
                     double scale) const {
    const int64_t row = id - b.offset;
    if (b.f64) {
      const double* k = static_cast<const double*>(b.keys) + row * dk_;
      double s = 0;
      for (int64_t j = 0; j < dk_; ++j) s += q[j] * k[j];
      return scale * s;
    }
    const float* k = static_cast<const float*>(b.keys) + row * dk_;
    return scale * static_cast<double>(kernels::dot_f32(q32, k, dk_));
  }

  // The bank holding a valid global id.
  const Bank& bank_of(int64_t id) const {
    return banks_[locate_global_id(offsets_, total_, id).first];
  }

  void add_row(int64_t id, double w, double* out, bool key) const {
    const Bank& b = bank_of(id);
    const int64_t row = id - b.offset, d = key ? dk_ : dv_;
    const void* base = key ? b.keys : b.values;
    if (b.f64) {
      const double* x = static_cast<const double*>(base) + row * d;
      for (int64_t j = 0; j < d; ++j) out[j] += w * x[j];
    } else {
      const float* x = static_cast<const float*>(base) + row * d;
      for (int64_t j = 0; j < d; ++j) out[j] += w * static_cast<double>(x[j]);
    }
  }

  std::vector<torch::Tensor> keys_, values_;
  std::vector<Bank> banks_;
  std::vector<int64_t> offsets_;  // bank_offsets: global id of each bank's row 0
  int64_t total_ = 0, dk_ = 0, dv_ = 0;
};

}  // namespace kvtune::impl

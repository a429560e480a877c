#include "kernels/knn_attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/dot.h"

namespace kvtune::kernels {
namespace {

template <typename T>
inline T dot(const T* a, const T* b, int64_t d) {
  T s = 0;
  for (int64_t i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

// <q, k> of a query and a key: for float32 the one SIMD routine the sampled estimators score
// with (kernels::dot_f32), so both paths score a key with the same arithmetic; float64 in order.
inline float key_dot(const float* q, const float* k, int64_t d) {
  return dot_f32(q, k, d);
}
inline double key_dot(const double* q, const double* k, int64_t d) {
  return dot(q, k, d);
}

template <typename T>
inline void axpy(T alpha, const T* x, T* y, int64_t d) {
  for (int64_t i = 0; i < d; ++i) y[i] += alpha * x[i];
}

// The bank holding global id `id`, and the row inside it. Banks are few: a linear scan.
template <typename T>
inline const BankPointers<T>* locate(const BankPointers<T>* banks, int nbanks, int64_t id,
                                     int64_t* row) {
  for (int b = 0; b < nbanks; ++b) {
    const int64_t local = id - banks[b].offset;
    if (local >= 0 && local < banks[b].rows) {
      *row = local;
      return &banks[b];
    }
  }
  return nullptr;
}

// Gathered bank rows are a cache miss each: the row `ahead` entries on is asked for early, so
// several misses are in flight at once (rows of d elements, every cache line of the row).
constexpr int64_t kPrefetchAhead = 8;

template <typename T>
inline void prefetch_row(const BankPointers<T>* banks, int nbanks, int64_t id, int64_t d,
                         bool keys) {
  int64_t row;
  const BankPointers<T>* bank = id >= 0 ? locate(banks, nbanks, id, &row) : nullptr;
  if (bank == nullptr) return;
  const char* p = reinterpret_cast<const char*>((keys ? bank->keys : bank->values) + row * d);
  for (int64_t at = 0; at < d * static_cast<int64_t>(sizeof(T)); at += 64)
    __builtin_prefetch(p + at);
}

}  // namespace

template <typename T>
void topk_attention_forward(const T* q, int64_t R, int64_t dk, int64_t dv,
                            const BankPointers<T>* banks, int nbanks, const int64_t* cand,
                            int64_t C, int64_t k, T scale, int64_t* top_ids, T* top_scores,
                            T* probs, T* out) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
#pragma omp parallel
  {
    std::vector<std::pair<T, int64_t>> scored;  // per-thread scratch
    scored.reserve(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const T* qr = q + r * dk;
      scored.clear();
      for (int64_t c = 0; c < C; ++c) {
        if (c + kPrefetchAhead < C)
          prefetch_row(banks, nbanks, cand[r * C + c + kPrefetchAhead], dk, /*keys=*/true);
        const int64_t id = cand[r * C + c];
        if (id < 0) continue;
        int64_t row;
        const BankPointers<T>* bank = locate(banks, nbanks, id, &row);
        if (bank == nullptr) continue;
        scored.emplace_back(scale * key_dot(qr, bank->keys + row * dk, dk), id);
      }
      const int64_t kept = std::min<int64_t>(k, static_cast<int64_t>(scored.size()));
      auto better = [](const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      std::partial_sort(scored.begin(), scored.begin() + kept, scored.end(), better);

      int64_t* ids_r = top_ids + r * k;
      T* scores_r = top_scores + r * k;
      for (int64_t j = 0; j < kept; ++j) {
        ids_r[j] = scored[j].second;
        scores_r[j] = scored[j].first;
      }
      for (int64_t j = kept; j < k; ++j) {
        ids_r[j] = -1;
        scores_r[j] = neg_inf;
      }
      if (probs == nullptr) continue;  // the selection only
      T* probs_r = probs + r * k;
      T* out_r = out + r * dv;
      std::fill(out_r, out_r + dv, T(0));
      const T max_score = kept > 0 ? scored[0].first : T(0);
      T z = 0;
      for (int64_t j = 0; j < kept; ++j) {
        probs_r[j] = std::exp(scored[j].first - max_score);
        z += probs_r[j];
      }
      for (int64_t j = kept; j < k; ++j) probs_r[j] = 0;
      for (int64_t j = 0; j < kept; ++j) {
        if (j + kPrefetchAhead < kept)
          prefetch_row(banks, nbanks, ids_r[j + kPrefetchAhead], dv, /*keys=*/false);
        probs_r[j] /= z;
        int64_t row;
        const BankPointers<T>* bank = locate(banks, nbanks, ids_r[j], &row);
        axpy(probs_r[j], bank->values + row * dv, out_r, dv);
      }
    }
  }
}

template <typename T>
void topk_attention_backward_query(const T* dout, const T* out, const int64_t* top_ids,
                                   const T* probs, int64_t R, int64_t dk, int64_t dv, int64_t k,
                                   const BankPointers<T>* banks, int nbanks, T scale, T* g, T* dq) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* dout_r = dout + r * dv;
    const T d_r = dot(dout_r, out + r * dv, dv);
    T* dq_r = dq + r * dk;
    std::fill(dq_r, dq_r + dk, T(0));
    for (int64_t j = 0; j < k; ++j) {
      const int64_t id = top_ids[r * k + j];
      int64_t row;
      const BankPointers<T>* bank = id >= 0 ? locate(banks, nbanks, id, &row) : nullptr;
      if (bank == nullptr) {
        g[r * k + j] = 0;
        continue;
      }
      const T p = probs[r * k + j];
      const T grj = p * (dot(dout_r, bank->values + row * dv, dv) - d_r);
      g[r * k + j] = grj;
      axpy(scale * grj, bank->keys + row * dk, dq_r, dk);
    }
  }
}

template <typename T>
void topk_attention_backward_rows(const T* q, const T* dout, const T* probs, const T* g,
                                  const int64_t* pair_index, const int64_t* segments, int64_t U,
                                  int64_t k, int64_t dk, int64_t dv, T scale, T* dkeys,
                                  T* dvalues) {
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t u = 0; u < U; ++u) {
    T* dk_u = dkeys ? dkeys + u * dk : nullptr;
    T* dv_u = dvalues ? dvalues + u * dv : nullptr;
    if (dk_u) std::fill(dk_u, dk_u + dk, T(0));
    if (dv_u) std::fill(dv_u, dv_u + dv, T(0));
    for (int64_t e = segments[u]; e < segments[u + 1]; ++e) {
      const int64_t flat = pair_index[e];
      const int64_t r = flat / k;
      if (dv_u) axpy(probs[flat], dout + r * dv, dv_u, dv);
      if (dk_u) axpy(scale * g[flat], q + r * dk, dk_u, dk);
    }
  }
}

#define KVTUNE_INSTANTIATE(T)                                                                     \
  template void topk_attention_forward<T>(const T*, int64_t, int64_t, int64_t,                    \
                                          const BankPointers<T>*, int, const int64_t*, int64_t,   \
                                          int64_t, T, int64_t*, T*, T*, T*);                      \
  template void topk_attention_backward_query<T>(const T*, const T*, const int64_t*, const T*,    \
                                                 int64_t, int64_t, int64_t, int64_t,              \
                                                 const BankPointers<T>*, int, T, T*, T*);         \
  template void topk_attention_backward_rows<T>(const T*, const T*, const T*, const T*,           \
                                                const int64_t*, const int64_t*, int64_t, int64_t, \
                                                int64_t, int64_t, T, T*, T*);
KVTUNE_INSTANTIATE(float)
KVTUNE_INSTANTIATE(double)
#undef KVTUNE_INSTANTIATE

}  // namespace kvtune::kernels

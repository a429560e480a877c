// Top-k plus uniform tail samples (Mussmann's estimator; docs/sampled-attention.md, Estimators) for
// one query row: the top-k set S with weight 1 and l keys T drawn uniformly without replacement
// from the other n - k keys with weight (n - k) / l, so that
//   Z^ = sum_{S u T} w_j exp(s_j)   and   O^ = sum_{S u T} w_j exp(s_j) v_j / Z^.
// Z^ is unbiased (each tail key is in T with probability l / (n - k)) and
// Var(Z^) <= n / (4 k l) Z^2 (derivation in docs/sampled-attention.md). RNG and seeding as in
// lazy_gumbel.h.
#pragma once

#include <cstdint>
#include <vector>

#include "attention/lazy_gumbel.h"

namespace kvtune {

struct TopkTailSample {
  std::vector<int64_t> ids;     // S (valid top-k ids, in the given order), then T
  std::vector<double> scores;   // s_j
  std::vector<double> weights;  // 1 on S, (n - k) / l on T
  int64_t tail_size = 0;        // n - k: keys outside S
};

// top_ids [k] (entries < 0 skipped) and their scores; n keys in all. l >= n - k takes the whole
// tail with weight 1 (then Z^ and O^ are exact); l = 0 gives the top-k softmax.
TopkTailSample topk_tail_sample(const int64_t* top_ids, const double* top_scores, int64_t k,
                                int64_t n, int64_t l, const ScoreFn& score, SamplerRng& rng);

// log Z^ of a sample, computed stably (shifted by the largest score).
double log_partition(const TopkTailSample& sample);

}  // namespace kvtune

// Lazy Gumbel sampling (docs/sampled-attention.md, The lazy Gumbel sampler; after Mussmann, Levy &
// Ermon 2017): exact samples from softmax(s) over all n keys of all banks, scoring only the top-k
// set S plus a random subset of the other keys whose size is Binomial(n - k, pB), E <= (n - k) / k.
//
// RNG and seeding: every random number comes from a std::mt19937_64 (`SamplerRng`), whose
// output sequence the C++ standard fixes, through our own fixed maps (`open_uniform`, the
// Gumbel and geometric draws below), never through std::*_distribution, whose outputs differ
// between standard libraries. The same seed and the same inputs therefore give the same
// samples on every platform. Independent streams (one per query row) are seeded with
// `stream_seed(seed, stream)`, so results do not depend on the number of threads.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"

namespace kvtune {

using SamplerRng = std::mt19937_64;

// The seed of stream `stream` derived from `seed` (SplitMix64 finalizer over both): distinct
// streams get unrelated seeds even for consecutive inputs.
uint64_t stream_seed(uint64_t seed, uint64_t stream);

// Uniform in the open interval (0, 1): 53 random bits, centred in their cell.
inline double open_uniform(SamplerRng& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

// Uniform integer in [0, bound), bound > 0: the high 64 bits of rng() * bound (Lemire's map;
// bias below bound / 2^64).
int64_t uniform_index(SamplerRng& rng, int64_t bound);

// G ~ Gumbel(0, 1): -log(-log U).
double gumbel(SamplerRng& rng);

// P(G > b) for G ~ Gumbel(0, 1): -expm1(-exp(-b)). Stable for large b (about exp(-b) where
// 1 - exp(-exp(-b)) would round to 0); 0 only when exp(-b) underflows (b > ~745).
double gumbel_tail_probability(double b);

// G ~ Gumbel(0, 1) conditioned on G > b, given tail_p = gumbel_tail_probability(b) > 0.
// exp(-G) is Exp(1) truncated to [0, exp(-b)); by inversion E = -log1p(-V * tail_p),
// G = -log E, with V ~ U(0, 1). No cancellation for any b.
double truncated_gumbel(double b, double tail_p, SamplerRng& rng);

// Scores of arbitrary global ids: scores[i] = s(ids[i]) for i < count. Called from one thread
// per sampler; a sampler per thread may share one function when it is thread-safe.
using ScoreFn = std::function<void(const int64_t* ids, int64_t count, double* scores)>;

// Scores scale * <q, k_id> of global ids over banks (ids as in knn_attention.h: bank b's row i
// is offset(b) + i), as the sampled estimators score them: in double for float64 keys, in float32
// (kernels::dot_f32, SIMD) for float32 keys. `q` [dk] is copied; the banks' tensors must
// outlive the function. Thread-safe.
ScoreFn make_bank_scorer(const std::vector<BankView>& banks, const torch::Tensor& q, double scale);

// The keys not in a set S of global ids in [0, n), numbered 0 .. n - |S| - 1 in increasing id
// order: tail_id(t) is the t-th of them (binary search over S sorted, O(log |S|)).
class TailIds {
 public:
  TailIds(std::vector<int64_t> s_ids, int64_t n);
  int64_t size() const { return n_ - static_cast<int64_t>(sorted_.size()); }
  int64_t operator()(int64_t t) const;

  // tail_id of ascending positions by one merge walk over S: O(count + |S|) for all of them.
  class Walk {
   public:
    explicit Walk(const TailIds& ids) : ids_(ids) {}
    int64_t operator()(int64_t t);  // t >= the previous call's t

   private:
    const TailIds& ids_;
    size_t j_ = 0;
    int64_t last_ = -1;
  };

 private:
  std::vector<int64_t> sorted_;  // S, ascending
  std::vector<int64_t> before_;  // before_[j] = sorted_[j] - j: tail keys below sorted_[j]
  int64_t n_;
};

struct LazyGumbelDraw {
  int64_t id = -1;          // the sampled global id
  double score = 0;         // its score
  int64_t tail_scored = 0;  // keys outside S scored for this draw (|T| = m)
};

class LazyGumbelSampler {
 public:
  // top_ids [k]: distinct global ids in [0, n) (entries < 0 are skipped), top_scores [k] their
  // scores; n: keys in all banks together; score: scores of any other id. Samples are exact
  // when no key outside S scores above min(top_scores), as with an exact (Flat) index; keys
  // that do are counted in above_threshold() (their probability is underestimated).
  LazyGumbelSampler(const int64_t* top_ids, const double* top_scores, int64_t k, int64_t n,
                    ScoreFn score);

  // One exact draw from softmax(s) over all n keys.
  LazyGumbelDraw draw(SamplerRng& rng);
  // `count` draws: the same draws as `count` calls of draw(rng), but the tail keys of all of
  // them are scored together, each distinct key once (one call of the score function).
  void draw(int64_t count, SamplerRng& rng, LazyGumbelDraw* out);
  // The same, into ids[count]; returns the tail keys the draws examined (sum of tail_scored).
  int64_t draw(int64_t count, SamplerRng& rng, int64_t* ids);

  int64_t k() const { return static_cast<int64_t>(ids_.size()); }
  int64_t n() const { return n_; }
  double min_top_score() const { return s_min_; }
  const TailIds& tail() const { return tail_; }
  int64_t above_threshold() const { return above_threshold_; }

 private:
  std::vector<int64_t> ids_;
  std::vector<double> scores_;
  std::vector<double> cdf_;  // cumulative exp(s_j - max s) over S, in the order given
  double log_z_ = 0;         // log sum_j exp(s_j) over S
  int64_t n_;
  double s_min_;
  TailIds tail_;
  ScoreFn score_;
  // Scratch of draw(count, ...): every draw's tail keys one after the other (draw c's from
  // starts_[c]) and their truncated Gumbels; the keys' sort order, the distinct keys with their
  // scores, and each key's place among them.
  std::vector<int64_t> tail_scratch_, starts_, order_, unique_ids_, slot_;
  std::vector<double> gumbel_scratch_, unique_scores_, best_scratch_;
  std::vector<LazyGumbelDraw> draws_;
  int64_t above_threshold_ = 0;
};

}  // namespace kvtune

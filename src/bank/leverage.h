// Leverage scores of a bank's keys and the LevAttention universal set (docs/banks.md, Leverage
// scores): tau_j = k_j^T (K^T K)^+ k_j, sum_j tau_j = rank(K), and U = {j : tau_j >= eps} holds
// every key j with A_ij >= eps for A = rownormalize((Q K^T)^2), whatever the queries Q; |U| <= rank
// / eps.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace kvtune {

// Eigenvalues of K^T K below this fraction of the largest count as zero in the pseudo-inverse
// (singular values of K below ~1e-5 of the largest): float32 rounding of keys that span a
// subspace leaves eigenvalues ~1e-14 of the largest, which must not count as rank.
inline constexpr double kLeverageRankTolerance = 1e-10;

// Keys are accumulated in chunks of this many rows (float64 copies stay small on 2^20-row banks).
inline constexpr int64_t kLeverageChunkRows = 8192;

// M = K^T K in float64 [d, d], summed over chunks of kLeverageChunkRows rows in order.
torch::Tensor gram_matrix(const torch::Tensor& keys);

struct GramPseudoInverse {
  torch::Tensor pinv;  // [d, d] float64
  int64_t rank = 0;    // eigenvalues kept
};
// M^+ of a symmetric positive semi-definite M, by eigendecomposition with the cutoff above.
GramPseudoInverse gram_pseudo_inverse(const torch::Tensor& gram);

// tau_j = k_j^T pinv k_j for every row of keys [N, d] (any float dtype): [N] float64.
torch::Tensor leverage_scores(const torch::Tensor& keys, const torch::Tensor& pinv);
// Two passes: M = K^T K, then the scores.
torch::Tensor leverage_scores(const torch::Tensor& keys);

// Two passes: the rows with tau_j >= eps, ascending ([|U|] int64). eps in (0, 1].
torch::Tensor universal_set(const torch::Tensor& keys, double eps);

// One pass over the keys in any number of add() calls: M grows with each key, candidates are kept
// with their keys, and when there are more than 2 d / eps of them, those scoring below eps under
// the current M are dropped. A key's score only falls as M grows (for k in range(M),
// k^T (M + X)^+ k <= k^T M^+ k when X is PSD), so a dropped key is never in U, and finish()
// returns the set universal_set(keys, eps) returns while holding O(d^2 + d / eps) numbers (the
// same set exactly when the rows come in chunks of kLeverageChunkRows, as M is then summed in the
// same order; otherwise up to rounding of scores within ~1e-12 of eps).
class StreamingUniversalSet {
 public:
  StreamingUniversalSet(int64_t dim, double eps);

  // The next rows of K, [B, d]; their row ids continue from the rows added before.
  void add(const torch::Tensor& keys);
  // Final scores under the whole M: the rows with tau_j >= eps, ascending ([|U|] int64).
  torch::Tensor finish();

  int64_t rows_seen() const { return rows_seen_; }
  int64_t peak_candidates() const { return peak_candidates_; }
  int64_t prunes() const { return prunes_; }  // prunes while adding (finish's is not counted)
  int64_t candidate_limit() const { return limit_; }

 private:
  void prune();

  int64_t dim_;
  double eps_;
  int64_t limit_;
  torch::Tensor gram_;                  // [d, d] float64
  std::vector<torch::Tensor> pending_;  // candidate keys not yet concatenated, float64
  std::vector<torch::Tensor> pending_ids_;
  torch::Tensor keys_;  // [C, d] float64 candidate keys
  torch::Tensor ids_;   // [C] int64 their rows
  int64_t count_ = 0;
  int64_t rows_seen_ = 0;
  int64_t peak_candidates_ = 0;
  int64_t prunes_ = 0;
};

}  // namespace kvtune

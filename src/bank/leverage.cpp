#include "bank/leverage.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace kvtune {

namespace {

void check_keys(const torch::Tensor& keys, const char* what) {
  KVT_CHECK(keys.defined() && keys.dim() == 2, what, ": keys must be [N, d], got ",
            keys.defined() ? keys.sizes() : c10::IntArrayRef{});
  KVT_CHECK(keys.is_floating_point(), what, ": keys must be floating point, got ",
            c10::toString(keys.scalar_type()));
}

void check_eps(double eps, const char* what) {
  KVT_CHECK(std::isfinite(eps) && eps > 0.0 && eps <= 1.0, what, ": eps is ", eps,
            ", expected a threshold in (0, 1] (leverage scores lie in [0, 1])");
}

torch::Tensor as_f64(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
}

}  // namespace

torch::Tensor gram_matrix(const torch::Tensor& keys) {
  check_keys(keys, "gram_matrix");
  torch::NoGradGuard no_grad;
  const int64_t n = keys.size(0), d = keys.size(1);
  torch::Tensor gram = torch::zeros({d, d}, torch::kFloat64);
  for (int64_t start = 0; start < n; start += kLeverageChunkRows) {
    const auto chunk = as_f64(keys.slice(0, start, std::min(n, start + kLeverageChunkRows)));
    gram.add_(chunk.t().matmul(chunk));
  }
  return gram;
}

GramPseudoInverse gram_pseudo_inverse(const torch::Tensor& gram) {
  KVT_CHECK(gram.dim() == 2 && gram.size(0) == gram.size(1),
            "gram_pseudo_inverse: expected a square matrix, got ", gram.sizes());
  torch::NoGradGuard no_grad;
  const auto [eigenvalues, eigenvectors] = torch::linalg_eigh(as_f64(gram));
  GramPseudoInverse out;
  const double largest = gram.size(0) > 0 ? eigenvalues.max().item<double>() : 0.0;
  if (largest <= 0.0) {
    out.pinv = torch::zeros_like(eigenvectors);
    return out;
  }
  const auto kept = eigenvalues.gt(kLeverageRankTolerance * largest);
  out.rank = kept.sum().item<int64_t>();
  const auto inverse = torch::where(kept, eigenvalues.reciprocal(), torch::zeros_like(eigenvalues));
  out.pinv = (eigenvectors * inverse.unsqueeze(0)).matmul(eigenvectors.t());
  return out;
}

torch::Tensor leverage_scores(const torch::Tensor& keys, const torch::Tensor& pinv) {
  check_keys(keys, "leverage_scores");
  KVT_CHECK(pinv.dim() == 2 && pinv.size(0) == keys.size(1) && pinv.size(1) == keys.size(1),
            "leverage_scores: pinv is ", pinv.sizes(), " but the keys have d = ", keys.size(1));
  torch::NoGradGuard no_grad;
  const int64_t n = keys.size(0);
  const auto p = as_f64(pinv);
  torch::Tensor scores = torch::empty({n}, torch::kFloat64);
  for (int64_t start = 0; start < n; start += kLeverageChunkRows) {
    const int64_t end = std::min(n, start + kLeverageChunkRows);
    const auto chunk = as_f64(keys.slice(0, start, end));
    scores.slice(0, start, end).copy_(chunk.matmul(p).mul_(chunk).sum(1));
  }
  return scores;
}

torch::Tensor leverage_scores(const torch::Tensor& keys) {
  return leverage_scores(keys, gram_pseudo_inverse(gram_matrix(keys)).pinv);
}

torch::Tensor universal_set(const torch::Tensor& keys, double eps) {
  check_eps(eps, "universal_set");
  return leverage_scores(keys).ge(eps).nonzero().flatten();
}

StreamingUniversalSet::StreamingUniversalSet(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  KVT_CHECK(dim >= 1, "StreamingUniversalSet: dim is ", dim, ", expected >= 1");
  check_eps(eps, "StreamingUniversalSet");
  limit_ = static_cast<int64_t>(std::ceil(2.0 * static_cast<double>(dim) / eps));
  gram_ = torch::zeros({dim, dim}, torch::kFloat64);
  keys_ = torch::empty({0, dim}, torch::kFloat64);
  ids_ = torch::empty({0}, torch::kInt64);
}

void StreamingUniversalSet::add(const torch::Tensor& keys) {
  check_keys(keys, "StreamingUniversalSet::add");
  KVT_CHECK(keys.size(1) == dim_, "StreamingUniversalSet::add: keys have d = ", keys.size(1),
            ", expected ", dim_);
  torch::NoGradGuard no_grad;
  const int64_t b = keys.size(0);
  if (b == 0) return;
  const auto k = as_f64(keys);
  gram_.add_(k.t().matmul(k));
  pending_.push_back(k);
  pending_ids_.push_back(torch::arange(rows_seen_, rows_seen_ + b, torch::kInt64));
  rows_seen_ += b;
  count_ += b;
  peak_candidates_ = std::max(peak_candidates_, count_);
  if (count_ > limit_) {
    prune();
    ++prunes_;
  }
}

void StreamingUniversalSet::prune() {
  pending_.insert(pending_.begin(), keys_);
  pending_ids_.insert(pending_ids_.begin(), ids_);
  keys_ = torch::cat(pending_);
  ids_ = torch::cat(pending_ids_);
  pending_.clear();
  pending_ids_.clear();
  const auto keep = leverage_scores(keys_, gram_pseudo_inverse(gram_).pinv).ge(eps_);
  keys_ = keys_.index({keep}).contiguous();
  ids_ = ids_.index({keep});
  count_ = ids_.size(0);
}

torch::Tensor StreamingUniversalSet::finish() {
  torch::NoGradGuard no_grad;
  prune();
  return std::get<0>(ids_.sort());
}

}  // namespace kvtune

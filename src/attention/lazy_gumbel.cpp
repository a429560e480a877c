#include "attention/lazy_gumbel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "attention/impl/bank_rows.h"
#include "common/check.h"

namespace kvtune {

uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(seed) ^ stream);
}

double open_uniform(SamplerRng& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

int64_t uniform_index(SamplerRng& rng, int64_t bound) {
  const unsigned __int128 x = static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(bound);
  return static_cast<int64_t>(x >> 64);
}

double gumbel(SamplerRng& rng) {
  return -std::log(-std::log(open_uniform(rng)));
}

double gumbel_tail_probability(double b) {
  return -std::expm1(-std::exp(-b));
}

double truncated_gumbel(double /*b*/, double tail_p, SamplerRng& rng) {
  const double e = -std::log1p(-open_uniform(rng) * tail_p);
  return -std::log(e);
}

ScoreFn make_bank_scorer(const std::vector<BankView>& banks, const torch::Tensor& q, double scale) {
  KVT_CHECK(!banks.empty(), "bank scorer: no banks");
  for (const auto& b : banks) {
    KVT_CHECK(b.keys.dim() == 2 && b.keys.size(1) == q.numel() && b.keys.is_contiguous() &&
                  b.values.dim() == 2 && b.values.is_contiguous(),
              "bank scorer: keys must be contiguous [N, ", q.numel(), "] with values [N, d_v]");
    KVT_CHECK(b.keys.scalar_type() == torch::kFloat32 || b.keys.scalar_type() == torch::kFloat64,
              "bank scorer: keys must be float32 or float64, got ", b.keys.scalar_type());
  }
  auto rows = std::make_shared<const impl::BankRows>(banks);
  const auto qd = q.detach().to(torch::kFloat64).contiguous().reshape({-1});
  std::vector<double> qv(qd.data_ptr<double>(), qd.data_ptr<double>() + qd.numel());
  return [rows, qv = std::move(qv), scale](const int64_t* ids, int64_t count, double* scores) {
    for (int64_t i = 0; i < count; ++i) scores[i] = rows->score(qv.data(), ids[i], scale);
  };
}

TailIds::TailIds(std::vector<int64_t> s_ids, int64_t n) : sorted_(std::move(s_ids)), n_(n) {
  std::sort(sorted_.begin(), sorted_.end());
  KVT_CHECK(std::adjacent_find(sorted_.begin(), sorted_.end()) == sorted_.end(),
            "the top-k ids must be distinct");
  KVT_CHECK(sorted_.empty() || (sorted_.front() >= 0 && sorted_.back() < n),
            "the top-k ids must lie in [0, n) with n = ", n);
  before_.resize(sorted_.size());
  for (size_t j = 0; j < sorted_.size(); ++j) before_[j] = sorted_[j] - static_cast<int64_t>(j);
}

int64_t TailIds::operator()(int64_t t) const {
  const auto c = std::upper_bound(before_.begin(), before_.end(), t) - before_.begin();
  return t + c;
}

namespace {

std::vector<int64_t> valid_ids(const int64_t* ids, int64_t k) {
  std::vector<int64_t> v;
  for (int64_t j = 0; j < k; ++j)
    if (ids[j] >= 0) v.push_back(ids[j]);
  return v;
}

}  // namespace

LazyGumbelSampler::LazyGumbelSampler(const int64_t* top_ids, const double* top_scores, int64_t k,
                                     int64_t n, ScoreFn score)
    : n_(n), tail_(valid_ids(top_ids, k), n), score_(std::move(score)) {
  for (int64_t j = 0; j < k; ++j) {
    if (top_ids[j] < 0) continue;
    KVT_CHECK(std::isfinite(top_scores[j]), "lazy Gumbel: the score of id ", top_ids[j], " is ",
              top_scores[j]);
    ids_.push_back(top_ids[j]);
    scores_.push_back(top_scores[j]);
  }
  KVT_CHECK(!ids_.empty(), "lazy Gumbel needs at least one top-k id (got none of ", k, ")");
  s_min_ = *std::min_element(scores_.begin(), scores_.end());
  KVT_CHECK(tail_.size() == 0 || score_, "lazy Gumbel: a score function is needed when k < n");
}

LazyGumbelDraw LazyGumbelSampler::draw(SamplerRng& rng) {
  LazyGumbelDraw d;
  double best = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < ids_.size(); ++j) {
    const double v = scores_[j] + gumbel(rng);
    if (v > best) {
      best = v;
      d.id = ids_[j];
      d.score = scores_[j];
    }
  }
  const int64_t tail_n = tail_.size();
  if (tail_n == 0) return d;

  // A tail key (score <= s_min) can win only if its Gumbel exceeds B = M - s_min; those events
  // are i.i.d. Bernoulli(pB) given S's Gumbels. Their positions are found by geometric skips
  // (gap ~ Geometric(pB), by inversion): m ~ Binomial(n - k, pB) keys, uniform given m, in
  // O(m + 1) time and with no Binomial tables.
  const double b = best - s_min_;
  const double p = gumbel_tail_probability(b);
  const double log_q = std::log1p(-p);  // log(1 - pB): < 0, -inf when pB == 1
  tail_scratch_.clear();
  if (p > 0 && log_q < 0) {
    double t = -1;
    for (;;) {
      const double gap = std::isinf(log_q) ? 0.0 : std::floor(std::log(open_uniform(rng)) / log_q);
      t += 1 + gap;
      if (!(t < static_cast<double>(tail_n))) break;
      tail_scratch_.push_back(tail_(static_cast<int64_t>(t)));
    }
  }
  const int64_t m = static_cast<int64_t>(tail_scratch_.size());
  d.tail_scored = m;
  if (m == 0) return d;
  score_scratch_.resize(static_cast<size_t>(m));
  score_(tail_scratch_.data(), m, score_scratch_.data());
  for (int64_t i = 0; i < m; ++i) {
    const double s = score_scratch_[i];
    if (s > s_min_) ++above_threshold_;
    const double v = s + truncated_gumbel(b, p, rng);
    if (v > best) {
      best = v;
      d.id = tail_scratch_[i];
      d.score = s;
    }
  }
  return d;
}

int64_t LazyGumbelSampler::draw(int64_t count, SamplerRng& rng, int64_t* ids) {
  int64_t scored = 0;
  for (int64_t i = 0; i < count; ++i) {
    const auto d = draw(rng);
    ids[i] = d.id;
    scored += d.tail_scored;
  }
  return scored;
}

}  // namespace kvtune

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
  auto qv = std::make_shared<std::vector<double>>(qd.data_ptr<double>(),
                                                  qd.data_ptr<double>() + qd.numel());
  // The scorer points into *rows and *qv: the closure keeps both alive.
  return [rows, qv, score = rows->scorer(qv->data(), scale)](
             const int64_t* ids, int64_t count, double* scores) { score(ids, count, scores); };
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

int64_t TailIds::Walk::operator()(int64_t t) {
  KVT_CHECK(t >= last_, "TailIds::Walk: positions must ascend");
  last_ = t;
  while (j_ < ids_.before_.size() && ids_.before_[j_] <= t) ++j_;
  return t + static_cast<int64_t>(j_);
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
  const double s_max = *std::max_element(scores_.begin(), scores_.end());
  double total = 0;
  cdf_.reserve(scores_.size());
  for (const double x : scores_) cdf_.push_back(total += std::exp(x - s_max));
  log_z_ = s_max + std::log(total);
  KVT_CHECK(tail_.size() == 0 || score_, "lazy Gumbel: a score function is needed when k < n");
}

LazyGumbelDraw LazyGumbelSampler::draw(SamplerRng& rng) {
  LazyGumbelDraw d;
  draw(1, rng, &d);
  return d;
}

int64_t LazyGumbelSampler::draw(int64_t count, SamplerRng& rng, int64_t* ids) {
  draws_.resize(static_cast<size_t>(count));
  draw(count, rng, draws_.data());
  int64_t scored = 0;
  for (int64_t i = 0; i < count; ++i) {
    ids[i] = draws_[i].id;
    scored += draws_[i].tail_scored;
  }
  return scored;
}

void LazyGumbelSampler::draw(int64_t count, SamplerRng& rng, LazyGumbelDraw* out) {
  // Three phases, with the random numbers taken in the order one draw at a time would take
  // them (S's maximum and winner, the tail positions, the tail Gumbels), so the draws are the
  // same:
  // 1. every draw's top-k winner, tail keys and their truncated Gumbels;
  // 2. the union of all draws' tail keys scored once, in id order;
  // 3. every draw's winner among its top-k winner and its tail keys.
  const int64_t tail_n = tail_.size();
  tail_scratch_.clear();
  gumbel_scratch_.clear();
  starts_.assign(1, 0);
  std::vector<double>& best = best_scratch_;
  best.assign(static_cast<size_t>(count), -std::numeric_limits<double>::infinity());
  for (int64_t c = 0; c < count; ++c) {
    LazyGumbelDraw& d = out[c];
    d = LazyGumbelDraw();
    // The Gumbel-max over S without k Gumbels: M = max_j (s_j + G_j) is Gumbel(log Z_S) and
    // the argmax is distributed as softmax over S, independently of M. So one Gumbel gives M
    // and one uniform, by inverse CDF over S, the winner: O(log k) per draw, and the same joint
    // law of (M, winner), which is all the tail test below uses.
    best[c] = log_z_ + gumbel(rng);
    const double u = open_uniform(rng) * cdf_.back();
    const size_t j = std::min<size_t>(
        static_cast<size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin()),
        ids_.size() - 1);
    d.id = ids_[j];
    d.score = scores_[j];
    if (tail_n > 0) {
      // A tail key (score <= s_min) can win only if its Gumbel exceeds B = M - s_min; those
      // events are i.i.d. Bernoulli(pB) given S's Gumbels. Their positions are found by
      // geometric skips (gap ~ Geometric(pB), by inversion): m ~ Binomial(n - k, pB) keys,
      // uniform given m, in O(m + 1) time and with no Binomial tables. Positions ascend, so
      // their ids come from one merge walk over S (TailIds::Walk).
      const double b = best[c] - s_min_;
      const double p = gumbel_tail_probability(b);
      const double log_q = std::log1p(-p);  // log(1 - pB): < 0, -inf when pB == 1
      const size_t first = tail_scratch_.size();
      if (p > 0 && log_q < 0) {
        TailIds::Walk walk(tail_);
        double t = -1;
        for (;;) {
          const double gap =
              std::isinf(log_q) ? 0.0 : std::floor(std::log(open_uniform(rng)) / log_q);
          t += 1 + gap;
          if (!(t < static_cast<double>(tail_n))) break;
          tail_scratch_.push_back(walk(static_cast<int64_t>(t)));
        }
      }
      for (size_t i = first; i < tail_scratch_.size(); ++i) {
        gumbel_scratch_.push_back(truncated_gumbel(b, p, rng));
      }
      d.tail_scored = static_cast<int64_t>(tail_scratch_.size() - first);
    }
    starts_.push_back(static_cast<int64_t>(tail_scratch_.size()));
  }
  const int64_t m = static_cast<int64_t>(tail_scratch_.size());
  if (m == 0) return;

  // Phase 2: each distinct tail key scored once, in increasing id order.
  order_.resize(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) order_[i] = i;
  std::sort(order_.begin(), order_.end(), [this](int64_t a, int64_t b) {
    return tail_scratch_[a] < tail_scratch_[b] || (tail_scratch_[a] == tail_scratch_[b] && a < b);
  });
  unique_ids_.clear();
  slot_.resize(static_cast<size_t>(m));  // slot_[i]: tail key i's place among the distinct ones
  for (int64_t i = 0; i < m; ++i) {
    const int64_t id = tail_scratch_[order_[i]];
    if (unique_ids_.empty() || unique_ids_.back() != id) unique_ids_.push_back(id);
    slot_[order_[i]] = static_cast<int64_t>(unique_ids_.size()) - 1;
  }
  const int64_t u = static_cast<int64_t>(unique_ids_.size());
  unique_scores_.resize(static_cast<size_t>(u));
  score_(unique_ids_.data(), u, unique_scores_.data());

  // Phase 3.
  for (int64_t c = 0; c < count; ++c) {
    LazyGumbelDraw& d = out[c];
    for (int64_t i = starts_[c]; i < starts_[c + 1]; ++i) {
      const double s = unique_scores_[slot_[i]];
      if (s > s_min_) ++above_threshold_;
      const double v = s + gumbel_scratch_[i];
      if (v > best[c]) {
        best[c] = v;
        d.id = tail_scratch_[i];
        d.score = s;
      }
    }
  }
}

}  // namespace kvtune

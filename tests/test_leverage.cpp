// leverage.h, against the properties in docs/banks.md (Leverage scores): the scores sum to rank(K)
// (rank-deficient K too), every heavy entry of A = rownormalize((Q K^T)^2) lies in U (adversarial
// queries included), and the one-pass streaming set equals the two-pass one.
#include "bank/leverage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "bank_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

torch::Tensor unit_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, true);
}

// Unit keys with uneven leverage: Gaussian rows scaled per column from 1 down to `rare`, so keys
// that lean into the rare directions are the few that carry them.
torch::Tensor uneven_keys(int64_t n, int64_t d, double rare, at::Generator& gen) {
  const auto scale = torch::logspace(0.0, std::log10(rare), d, 10.0, torch::kFloat64);
  return unit_rows(torch::randn({n, d}, gen, torch::kFloat64) * scale);
}

// Rank r: rows of A [n, r] B [r, d], normalized (scaling rows keeps the row space).
torch::Tensor low_rank_keys(int64_t n, int64_t d, int64_t r, at::Generator& gen) {
  return unit_rows(torch::randn({n, r}, gen, torch::kFloat64)
                       .matmul(torch::randn({r, d}, gen, torch::kFloat64)));
}

// Reference, by another route: tau_j = |U_j|^2 for the left singular vectors U of K that have
// non-negligible singular values.
torch::Tensor svd_scores(const torch::Tensor& keys) {
  const auto [u, s, vh] = torch::linalg_svd(keys.to(torch::kFloat64), /*full_matrices=*/false);
  const auto kept = s.gt(1e-5 * s.max().item<double>());
  return u.index({torch::indexing::Slice(), kept}).pow(2).sum(1);
}

TEST(Leverage, ScoresSumToTheRankAndMatchTheSvd) {
  const uint64_t seed = test::test_seed();
  auto gen = at::detail::createCPUGenerator(seed);
  struct Case {
    const char* what;
    torch::Tensor keys;
    int64_t rank;
  };
  const auto dup = low_rank_keys(3, 13, 3, gen);
  const Case cases[] = {
      {"full rank, n >> d", uneven_keys(301, 13, 0.05, gen), 13},
      {"rank 5 of d = 13", low_rank_keys(257, 13, 5, gen), 5},
      {"rank 1", low_rank_keys(40, 7, 1, gen), 1},
      {"n < d with a repeated row", torch::cat({dup, dup.slice(0, 0, 1)}), 3},
  };
  for (const auto& c : cases) {
    for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
      const auto keys = c.keys.to(dtype);
      const auto inverse = gram_pseudo_inverse(gram_matrix(keys));
      const auto tau = leverage_scores(keys, inverse.pinv);
      const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
      SCOPED_TRACE(std::string(c.what) + (dtype == torch::kFloat64 ? " float64" : " float32"));
      EXPECT_EQ(inverse.rank, c.rank);
      EXPECT_NEAR(tau.sum().item<double>(), static_cast<double>(c.rank), tol * c.rank);
      EXPECT_LT((tau - svd_scores(keys)).abs().max().item<double>(), tol);
      EXPECT_GE(tau.min().item<double>(), -tol);
      EXPECT_LE(tau.max().item<double>(), 1.0 + tol);
      EXPECT_TRUE(torch::equal(tau, leverage_scores(keys)));  // the two-pass overload
    }
  }
}

// The first (query, key) with A_ij >= eps whose key is not in U, or {-1, -1}.
std::pair<int64_t, int64_t> heavy_entry_outside(const torch::Tensor& queries,
                                                const torch::Tensor& keys, const torch::Tensor& u,
                                                double eps) {
  auto a = queries.matmul(keys.t()).pow(2);
  a = a / a.sum(1, true);
  auto in_u = torch::zeros({keys.size(0)}, torch::kBool);
  if (u.numel() > 0) in_u.index_fill_(0, u, true);
  const auto bad = a.ge(eps).logical_and(in_u.logical_not().unsqueeze(0));
  if (!bad.any().item<bool>()) return {-1, -1};
  const auto first = bad.nonzero()[0];
  return {first[0].item<int64_t>(), first[1].item<int64_t>()};
}

TEST(Leverage, EveryHeavyEntryIsInTheUniversalSet) {
  const uint64_t seed = test::test_seed();
  auto gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor key_sets[] = {uneven_keys(400, 10, 0.03, gen),
                                    low_rank_keys(300, 10, 4, gen)};
  for (const auto& keys : key_sets) {
    const auto inverse = gram_pseudo_inverse(gram_matrix(keys));
    const auto tau = leverage_scores(keys, inverse.pinv);
    // Adversarial queries y_j = M^+ k_j reach the bound: A_jj = tau_j exactly.
    const auto adversarial = keys.matmul(inverse.pinv);
    auto a = adversarial.matmul(keys.t()).pow(2);
    a = a / a.sum(1, true);
    EXPECT_LT((a.diagonal() - tau).abs().max().item<double>(), 1e-9);
    const auto queries = torch::cat({torch::randn({200, 10}, gen, torch::kFloat64), adversarial});

    // Thresholds between two scores, so that U holds the top 50%, 10% and 1% of the keys.
    const auto sorted = std::get<0>(tau.sort());
    const auto between = [&](double q) {
      const int64_t i = static_cast<int64_t>(q * (keys.size(0) - 1));
      return 0.5 * (sorted[i].item<double>() + sorted[i + 1].item<double>());
    };
    for (const double eps : {between(0.5), between(0.9), between(0.99)}) {
      SCOPED_TRACE("eps " + std::to_string(eps) + ", rank " + std::to_string(inverse.rank));
      const auto u = universal_set(keys, eps);
      EXPECT_EQ(heavy_entry_outside(queries, keys, u, eps), std::make_pair(-1L, -1L));
      EXPECT_LE(u.numel(), static_cast<int64_t>(inverse.rank / eps));
      // Not vacuous: there are heavy entries, and U without its least-scored key misses one
      // (that key's adversarial query puts A_jj = tau_j >= eps on it).
      ASSERT_GT(u.numel(), 0);
      const int64_t weakest = u[tau.index_select(0, u).argmin()].item<int64_t>();
      const auto smaller = u.masked_select(u.ne(weakest));
      EXPECT_EQ(heavy_entry_outside(queries, keys, smaller, eps).second, weakest);
    }
  }
}

// A deliberately wrong set fails the same check: the test can fail.
TEST(Leverage, HeavyEntryCheckCatchesAWrongSet) {
  auto gen = at::detail::createCPUGenerator(test::test_seed());
  const auto keys = uneven_keys(200, 6, 0.05, gen);
  const auto pinv = gram_pseudo_inverse(gram_matrix(keys)).pinv;
  const auto queries = keys.matmul(pinv);
  // Scores without the inverse (k^T M k): large for common directions, not rare ones.
  const auto wrong_scores = keys.matmul(gram_matrix(keys)).mul(keys).sum(1);
  const auto wrong = std::get<1>(wrong_scores.topk(universal_set(keys, 0.05).numel()));
  EXPECT_NE(heavy_entry_outside(queries, keys, wrong, 0.05).first, -1);
}

TEST(Leverage, OnePassEqualsTwoPasses) {
  const uint64_t seed = test::test_seed();
  auto gen = at::detail::createCPUGenerator(seed);
  const auto keys = uneven_keys(601, 8, 0.02, gen).to(torch::kFloat32);
  const auto tau = leverage_scores(keys);
  // Candidate limits 2d/eps of 534, 320 and 80 rows: every stream prunes.
  for (const double eps : {0.03, 0.05, 0.2}) {
    SCOPED_TRACE("eps " + std::to_string(eps));
    // A score within rounding of eps could fall either way; fresh data makes that ~impossible.
    ASSERT_GT((tau - eps).abs().min().item<double>(), 1e-9);
    const auto two = universal_set(keys, eps);
    // One key at a time, then uneven batches.
    StreamingUniversalSet single(8, eps);
    for (int64_t i = 0; i < keys.size(0); ++i) single.add(keys.slice(0, i, i + 1));
    EXPECT_TRUE(torch::equal(single.finish(), two));
    EXPECT_LE(single.peak_candidates(), single.candidate_limit() + 1);
    EXPECT_GT(single.prunes(), 0);

    StreamingUniversalSet batched(8, eps);
    for (int64_t start = 0, step = 1; start < keys.size(0); start += step, step = step * 3 + 1) {
      batched.add(keys.slice(0, start, std::min(keys.size(0), start + step)));
    }
    EXPECT_TRUE(torch::equal(batched.finish(), two));
    EXPECT_EQ(batched.rows_seen(), keys.size(0));
  }
}

TEST(Leverage, RefusesBadArguments) {
  EXPECT_THAT(error_of([] { StreamingUniversalSet(4, 0.0); }), HasSubstr("eps is 0"));
  EXPECT_THAT(error_of([] { universal_set(torch::randn({5, 3}), 1.5); }), HasSubstr("eps is 1.5"));
  StreamingUniversalSet s(4, 0.5);
  EXPECT_THAT(error_of([&] { s.add(torch::randn({2, 5})); }), HasSubstr("d = 5, expected 4"));
  EXPECT_THAT(error_of([] { gram_matrix(torch::randn({5})); }), HasSubstr("[N, d]"));
}

TEST(Leverage, EmptyAndZeroKeys) {
  EXPECT_EQ(universal_set(torch::zeros({0, 4}), 0.1).numel(), 0);
  EXPECT_EQ(gram_pseudo_inverse(torch::zeros({4, 4})).rank, 0);
  StreamingUniversalSet s(4, 0.1);
  EXPECT_EQ(s.finish().numel(), 0);
}

}  // namespace
}  // namespace kvtune

// usage_stats.h against hand-computed cases.
#include "bank/usage_stats.h"

#include <gtest/gtest.h>

#include <cmath>

namespace kvtune {
namespace {

UsageStats of(const std::vector<int64_t>& usage) {
  return usage_stats(torch::tensor(usage, torch::kInt64));
}

TEST(UsageStats, OneSlotTakesEverything) {
  const auto s = of({0, 0, 4, 0});
  EXPECT_EQ(s.total, 4);
  EXPECT_EQ(s.max, 4);
  EXPECT_DOUBLE_EQ(s.fraction_used, 0.25);
  EXPECT_DOUBLE_EQ(s.gini, 0.75);  // (n - 1) / n
  EXPECT_DOUBLE_EQ(s.kl_uniform, std::log(4.0));
  EXPECT_EQ(s.top1_slots, 1);
  EXPECT_DOUBLE_EQ(s.top1_share, 1.0);
}

TEST(UsageStats, EvenUseIsZeroGiniAndZeroKl) {
  const auto s = of({3, 3, 3, 3, 3});
  EXPECT_DOUBLE_EQ(s.fraction_used, 1.0);
  EXPECT_NEAR(s.gini, 0.0, 1e-15);
  EXPECT_NEAR(s.kl_uniform, 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(s.top1_share, 0.2);
}

TEST(UsageStats, OneTwoThreeFour) {
  // Pairs |u_i - u_j|: 1+2+3+1+2+1 = 10, twice over ordered pairs = 20; 20 / (2 * 4^2 * 2.5).
  const auto s = of({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(s.gini, 0.25);
  // sum p log(4 p), p = .1 .2 .3 .4
  const double kl =
      0.1 * std::log(0.4) + 0.2 * std::log(0.8) + 0.3 * std::log(1.2) + 0.4 * std::log(1.6);
  EXPECT_NEAR(s.kl_uniform, kl, 1e-15);
  EXPECT_NEAR(s.kl_uniform, 0.1064401, 1e-7);
  EXPECT_DOUBLE_EQ(s.top1_share, 0.4);
}

TEST(UsageStats, TopOnePercentRoundsTheSlotCountUp) {
  std::vector<int64_t> u(101, 1);
  u[57] = 10;  // total 110; ceil(101 / 100) = 2 slots: 10 + 1
  auto s = of(u);
  EXPECT_EQ(s.top1_slots, 2);
  EXPECT_DOUBLE_EQ(s.top1_share, 11.0 / 110.0);
  std::vector<int64_t> v(200, 0);
  v[3] = 3;
  v[150] = 1;
  s = of(v);
  EXPECT_EQ(s.top1_slots, 2);
  EXPECT_DOUBLE_EQ(s.top1_share, 1.0);
  EXPECT_DOUBLE_EQ(s.fraction_used, 0.01);
  // Sorted: 198 zeros, 1, 3: (2*199 - 201) * 1 + (2*200 - 201) * 3 = 197 + 597, over 200 * 4.
  EXPECT_DOUBLE_EQ(s.gini, 794.0 / 800.0);
}

TEST(UsageStats, NothingCountedHasNoDistribution) {
  const auto s = of({0, 0, 0});
  EXPECT_EQ(s.total, 0);
  EXPECT_DOUBLE_EQ(s.fraction_used, 0.0);
  EXPECT_TRUE(std::isnan(s.gini));
  EXPECT_TRUE(std::isnan(s.kl_uniform));
  EXPECT_TRUE(std::isnan(s.top1_share));
  const auto j = to_json(s);
  EXPECT_TRUE(j["gini"].is_null());
  EXPECT_TRUE(j["kl_uniform_nats"].is_null());
  EXPECT_EQ(of({}).slots, 0);
}

}  // namespace
}  // namespace kvtune

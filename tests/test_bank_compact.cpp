// bank_compact.h: which slots each rule keeps, what the report says was dropped, and that one
// streaming pass keeps the same slots as two.
#include "bank/bank_compact.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "bank/leverage.h"
#include "bank_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

CompactOptions rule(const std::string& by, double keep, double eps, bool one_pass = false) {
  CompactOptions o;
  o.by = by;
  o.keep_fraction = keep;
  o.eps = eps;
  o.one_pass = one_pass;
  return o;
}

Bank usage_bank() {
  Bank b = make_random_bank("u", 8, 4, 3, 5, false);
  b.slot_ids = torch::tensor({80, 10, 70, 20, 60, 30, 50, 40}, torch::kInt64);
  b.usage = torch::tensor({5, 0, 9, 9, 1, 0, 6, 0}, torch::kInt64);  // total 30
  return b;
}

TEST(BankCompact, KeepsTheMostUsedSlotsInTheirOrder) {
  const Bank b = usage_bank();
  CompactReport r;
  const Bank c = compact_bank(b, rule("usage", 0.5, 0), &r);
  // Top 4 by usage: rows 2, 3 (9), 6 (6), 0 (5); kept in row order.
  EXPECT_TRUE(torch::equal(c.slot_ids, torch::tensor({80, 70, 20, 50}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(c.keys, b.keys.index_select(0, torch::tensor({0, 2, 3, 6}))));
  EXPECT_EQ(r.slots_after, 4);
  EXPECT_EQ(r.dropped, 4);
  EXPECT_EQ(r.usage_total, 30);
  EXPECT_EQ(r.usage_dropped, 1);
  EXPECT_DOUBLE_EQ(r.usage_share_dropped, 1.0 / 30.0);
  EXPECT_THAT(c.meta.provenance, HasSubstr("\"compacted_by\":\"kvtune bank compact\""));
  // Ties go to the smaller slot id: of the three unused slots (ids 10, 30, 40), 10 is kept.
  const Bank six = compact_bank(b, rule("usage", 0.75, 0));
  EXPECT_TRUE(torch::equal(six.slot_ids, torch::tensor({80, 10, 70, 20, 60, 50}, torch::kInt64)));
}

TEST(BankCompact, UsageShareThreshold) {
  CompactReport r;
  const Bank c = compact_bank(usage_bank(), rule("usage", 0, 0.2), &r);  // 6/30 >= 0.2
  EXPECT_TRUE(torch::equal(c.slot_ids, torch::tensor({70, 20, 50}, torch::kInt64)));
  EXPECT_EQ(r.usage_dropped, 6);
  Bank unused = usage_bank();
  unused.usage.zero_();
  EXPECT_THAT(error_of([&] { compact_bank(unused, rule("usage", 0, 0.1)); }),
              HasSubstr("no retrieval was counted"));
  EXPECT_THAT(error_of([] { compact_bank(usage_bank(), rule("usage", 0, 0.9)); }),
              HasSubstr("lower --eps"));
}

TEST(BankCompact, LeverageRulesAgreeWithTheScores) {
  const uint64_t seed = test::test_seed();
  auto gen = at::detail::createCPUGenerator(seed);
  Bank b = make_random_bank("l", 5000, 8, 3, seed, false);
  // Uneven directions: a few keys carry the rare ones.
  b.keys = b.keys * torch::logspace(0, -1.5, 8);
  b.keys = b.keys / b.keys.norm(2, 1, true);
  b.usage = torch::randint(0, 5, {5000}, gen, torch::kInt64);
  const auto tau = leverage_scores(b.keys);

  CompactReport r;
  const Bank top = compact_bank(b, rule("leverage", 0.1, 0), &r);
  EXPECT_EQ(top.size(), 500);
  const double kept_min = tau.index_select(0, top.slot_ids).min().item<double>();
  EXPECT_DOUBLE_EQ(r.min_kept_score, kept_min);
  EXPECT_GE(kept_min, std::get<0>(tau.sort(0, /*descending=*/true))[499].item<double>());
  EXPECT_EQ(r.rank, 8);
  EXPECT_NEAR(r.leverage_dropped, 8.0 - tau.index_select(0, top.slot_ids).sum().item<double>(),
              1e-9);

  for (const double eps : {0.002, 0.01}) {
    CompactReport two, one;
    const Bank u = compact_bank(b, rule("leverage", 0, eps), &two);
    const Bank s = compact_bank(b, rule("leverage", 0, eps, /*one_pass=*/true), &one);
    EXPECT_TRUE(torch::equal(u.slot_ids, universal_set(b.keys, eps)));
    EXPECT_TRUE(torch::equal(s.slot_ids, u.slot_ids));
    EXPECT_TRUE(torch::equal(s.keys, u.keys));
    EXPECT_EQ(one.candidate_limit, static_cast<int64_t>(std::ceil(16 / eps)));
    EXPECT_LE(u.size(), static_cast<int64_t>(8 / eps));
  }
}

TEST(BankCompact, RefusesBadOptions) {
  const Bank b = usage_bank();
  EXPECT_THAT(error_of([&] { compact_bank(b, rule("usage", 0.5, 0.1)); }),
              HasSubstr("exactly one of --keep"));
  EXPECT_THAT(error_of([&] { compact_bank(b, rule("usage", 0, 0)); }),
              HasSubstr("exactly one of --keep"));
  EXPECT_THAT(error_of([&] { compact_bank(b, rule("usage", 1.5, 0)); }),
              HasSubstr("--keep is 1.5"));
  EXPECT_THAT(error_of([&] { compact_bank(b, rule("leverage", 0.5, 0, true)); }),
              HasSubstr("--one-pass"));
  EXPECT_THAT(error_of([&] { compact_bank(b, rule("age", 0.5, 0)); }),
              HasSubstr("unknown criterion 'age'"));
}

}  // namespace
}  // namespace kvtune

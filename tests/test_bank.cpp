// bank.h: make_random_bank, validate_bank, effective_scale, index_path_for.
#include "bank/bank.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "bank_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

TEST(BankRandom, KeysAreUnitNormAndFieldsAreFilled) {
  const uint64_t seed = test::test_seed();
  const Bank b = make_random_bank("r", 37, 13, 7, seed, /*trainable=*/true);
  ASSERT_EQ(b.size(), 37);
  EXPECT_EQ(b.keys.sizes(), (std::vector<int64_t>{37, 13}));
  EXPECT_EQ(b.values.sizes(), (std::vector<int64_t>{37, 7}));
  const double worst = (b.keys.to(torch::kFloat64).norm(2, 1) - 1.0).abs().max().item<double>();
  EXPECT_LT(worst, 1e-6);
  EXPECT_TRUE(torch::equal(b.slot_ids, torch::arange(37, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.usage, torch::zeros({37}, torch::kInt64)));
  EXPECT_EQ(b.meta.name, "r");
  EXPECT_TRUE(b.meta.trainable);
  EXPECT_EQ(b.meta.key_dim, 13);
  EXPECT_EQ(b.meta.value_dim, 7);
  EXPECT_THAT(b.meta.provenance, HasSubstr(std::to_string(seed)));
  EXPECT_NO_THROW(validate_bank(b, "random bank"));
}

TEST(BankRandom, DeterministicForASeedWhateverTheGlobalSeed) {
  const uint64_t seed = test::test_seed();
  torch::manual_seed(1);
  const Bank a = make_random_bank("a", 41, 9, 5, seed, false);
  torch::manual_seed(2);
  const Bank b = make_random_bank("a", 41, 9, 5, seed, false);
  EXPECT_TRUE(torch::equal(a.keys, b.keys));
  EXPECT_TRUE(torch::equal(a.values, b.values));
}

TEST(BankRandom, DifferentSeedsGiveDifferentBanks) {
  const uint64_t seed = test::test_seed();
  const Bank a = make_random_bank("a", 41, 9, 5, seed, false);
  const Bank b = make_random_bank("a", 41, 9, 5, seed + 1, false);
  EXPECT_FALSE(torch::equal(a.keys, b.keys));
  EXPECT_FALSE(torch::equal(a.values, b.values));
}

TEST(BankRandom, ValuesHaveTheRequestedSpread) {
  // 64k Gaussian samples: the sample std is within ~0.3% of the true one, so 3% fails a
  // wrong scale (e.g. value_std squared, or unit std) and never a right one.
  const Bank b = make_random_bank("v", 4099, 16, 16, test::test_seed(), false, 0.05);
  EXPECT_NEAR(b.values.std().item<double>(), 0.05, 0.05 * 0.03);
  EXPECT_NEAR(b.values.mean().item<double>(), 0.0, 0.05 * 0.03);
  EXPECT_TRUE(
      torch::equal(make_random_bank("z", 5, 3, 4, 1, false, 0.0).values, torch::zeros({5, 4})));
}

TEST(BankRandom, RefusesBadArguments) {
  EXPECT_THAT(error_of([] { make_random_bank("x", -1, 4, 4, 0, false); }), HasSubstr("n is -1"));
  EXPECT_THAT(error_of([] { make_random_bank("x", 4, 0, 4, 0, false); }), HasSubstr("key_dim 0"));
  EXPECT_THAT(error_of([] { make_random_bank("x", 4, 4, 4, 0, false, -0.1); }),
              HasSubstr("value_std is -0.1"));
}

TEST(BankRandom, EmptyBankIsValid) {
  const Bank b = make_random_bank("e", 0, 8, 4, 0, false);
  EXPECT_EQ(b.size(), 0);
  EXPECT_NO_THROW(validate_bank(b, "empty"));
}

class BankValidate : public ::testing::Test {
 protected:
  Bank bank_ = make_random_bank("v", 23, 11, 6, 7, false);
  std::string error() {
    return error_of([&] { validate_bank(bank_, "bank 'v'"); });
  }
};

TEST_F(BankValidate, AcceptsAValidBank) {
  EXPECT_NO_THROW(validate_bank(bank_, "bank 'v'"));
}

TEST_F(BankValidate, NamesWhereAndTheProblem) {
  bank_.keys[17].mul_(1.53);
  const std::string msg = error();
  EXPECT_THAT(msg, HasSubstr("bank 'v': /keys row 17 has norm 1.53"));
  EXPECT_THAT(msg, HasSubstr("normalize keys"));
}

TEST_F(BankValidate, RefusesMissingOrWrongTypedTensors) {
  Bank b = bank_;
  b.values = torch::Tensor();
  EXPECT_THAT(error_of([&] { validate_bank(b, "w"); }), HasSubstr("/values is missing"));
  b = bank_;
  b.keys = b.keys.to(torch::kFloat64);
  EXPECT_THAT(error_of([&] { validate_bank(b, "w"); }),
              HasSubstr("/keys has dtype float64, expected float32"));
  b = bank_;
  b.slot_ids = b.slot_ids.to(torch::kInt32);
  EXPECT_THAT(error_of([&] { validate_bank(b, "w"); }),
              HasSubstr("/slot_ids has dtype int32, expected int64"));
  b = bank_;
  b.usage = b.usage.view({23, 1});
  EXPECT_THAT(error_of([&] { validate_bank(b, "w"); }), HasSubstr("/usage has shape [23, 1]"));
}

TEST_F(BankValidate, RefusesRowCountMismatch) {
  bank_.usage = bank_.usage.slice(0, 0, 22);
  EXPECT_THAT(error(), HasSubstr("/usage has 22 rows but /keys has 23"));
}

TEST_F(BankValidate, RefusesDimsThatDisagreeWithMeta) {
  bank_.meta.key_dim = 12;
  EXPECT_THAT(error(), HasSubstr("/keys has 11 columns but key_dim is 12"));
  bank_.meta.key_dim = 11;
  bank_.meta.value_dim = 5;
  EXPECT_THAT(error(), HasSubstr("/values has 6 columns but value_dim is 5"));
}

TEST_F(BankValidate, RefusesNonFiniteKeysAndValues) {
  bank_.values[4][2] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(error(), HasSubstr("/values row 4 column 2 is inf"));
  bank_.keys[3][5] = std::nanf("");
  EXPECT_THAT(error(), HasSubstr("/keys row 3 column 5 is nan"));
}

TEST_F(BankValidate, ToleratesTinyNormErrorsOnly) {
  bank_.keys[8].mul_(1.0 + kUnitNormTolerance / 4);
  EXPECT_NO_THROW(validate_bank(bank_, "bank 'v'"));
  bank_.keys[8].mul_(1.0 + 4 * kUnitNormTolerance);
  EXPECT_THAT(error(), HasSubstr("/keys row 8 has norm"));
}

TEST_F(BankValidate, RefusesDuplicateIdsAndNegativeUsage) {
  bank_.slot_ids[19] = 5;
  EXPECT_THAT(error(), HasSubstr("duplicate id 5 (rows 5 and 19)"));
  bank_.slot_ids[19] = 1000;
  bank_.usage[2] = -3;
  EXPECT_THAT(error(), HasSubstr("/usage row 2 is -3"));
}

TEST_F(BankValidate, RefusesBadScoreScale) {
  bank_.meta.score_scale = -1.0;
  EXPECT_THAT(error(), HasSubstr("score_scale is -1"));
  bank_.meta.score_scale = std::nan("");
  EXPECT_THAT(error(), HasSubstr("score_scale is nan"));
}

TEST_F(BankValidate, AcceptsTensorsThatRequireGrad) {
  bank_.keys.requires_grad_(true);
  bank_.values.requires_grad_(true);
  EXPECT_NO_THROW(validate_bank(bank_, "bank 'v'"));
}

TEST(BankScale, DefaultIsSqrtKeyDim) {
  Bank b = make_random_bank("s", 3, 16, 2, 0, false);
  EXPECT_EQ(b.effective_scale(), 4.0);
  b.meta.score_scale = 2.5;
  EXPECT_EQ(b.effective_scale(), 2.5);
}

TEST(BankPaths, IndexPathReplacesTheExtension) {
  EXPECT_EQ(index_path_for("x.h5"), "x.faiss");
  EXPECT_EQ(index_path_for("runs/a.b/bank.v2.h5"), "runs/a.b/bank.v2.faiss");
  EXPECT_EQ(index_path_for("runs/bank"), "runs/bank.faiss");
  EXPECT_THAT(error_of([] { index_path_for("runs/"); }), HasSubstr("file name"));
}

}  // namespace
}  // namespace kvtune

// The memory layer: shapes, gradients to the projections and to trainable banks only, usage.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/check.h"
#include "model/memory_layer.h"
#include "test_util.h"

namespace kvtune {
namespace {

MemoryLayerOptions small_options() {
  MemoryLayerOptions o;
  o.d_model = 24;
  o.heads = 3;
  o.key_dim = 8;
  o.value_dim = 5;
  o.attention.k = 6;
  return o;
}

TEST(MemoryLayer, ForwardBackwardOverFrozenAndTrainableBanks) {
  const uint64_t seed = test::test_seed();
  torch::manual_seed(seed);
  auto options = small_options();
  options.track_usage = true;
  MemoryLayer layer(options);
  auto base = std::make_shared<IndexedBank>(make_random_bank("base", 300, 8, 5, seed, false),
                                            IndexConfig{});
  auto domain = std::make_shared<IndexedBank>(
      make_random_bank("domain", 77, 8, 5, seed + 1, true, /*value_std=*/0.5), IndexConfig{});
  layer->attach(base);
  layer->attach(domain);

  const auto x = torch::randn({2, 7, 24});
  const auto y = layer->forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 7, 24}));
  ASSERT_EQ(layer->last_ids().sizes(), (std::vector<int64_t>{2, 7, 3, 6}));
  y.pow(2).sum().backward();

  EXPECT_TRUE(layer->query->weight.grad().defined());
  EXPECT_GT(layer->query->weight.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(layer->output->weight.grad().defined());
  EXPECT_FALSE(base->bank().keys.grad().defined());
  EXPECT_FALSE(base->bank().values.grad().defined());
  const auto ids = layer->last_ids();
  // 77 of 377 keys are the domain's: about 50 of the 252 retrievals land there.
  ASSERT_TRUE((ids >= 300).any().item<bool>()) << "no retrieval hit the domain bank";
  EXPECT_TRUE(domain->bank().keys.grad().is_sparse());
  EXPECT_TRUE(domain->bank().values.grad().is_sparse());
  // Usage counts every retrieval exactly once, in the bank it came from.
  const int64_t total =
      base->bank().usage.sum().item<int64_t>() + domain->bank().usage.sum().item<int64_t>();
  EXPECT_EQ(total, ids.numel());
  EXPECT_EQ(domain->bank().usage.sum().item<int64_t>(), (ids >= 300).sum().item<int64_t>());
}

TEST(MemoryLayer, RefusesBanksOfOtherDims) {
  MemoryLayer layer(small_options());
  auto wrong =
      std::make_shared<IndexedBank>(make_random_bank("w", 50, 9, 5, 1, false), IndexConfig{});
  try {
    layer->attach(wrong);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("has key_dim 9 and value_dim 5 but the memory "
                                               "layer expects 8 and 5"));
  }
  try {
    layer->forward(torch::randn({2, 24}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("no bank attached"));
  }
}

TEST(MemoryLayer, SparseBankGradientsFitATeacherBank) {
  // The retrieval sets stay the same when only values move, so the output is linear in the
  // values and gradient descent on the sparse value gradients must fit a teacher's values.
  // Wrong rows, signs or scaling in the sparse gradients make this fail.
  const uint64_t seed = test::test_seed();
  torch::manual_seed(seed);
  MemoryLayer layer(small_options());
  auto domain =
      std::make_shared<IndexedBank>(make_random_bank("d", 64, 8, 5, seed, true), IndexConfig{});
  layer->attach(domain);
  for (auto& p : layer->parameters()) p.set_requires_grad(false);
  auto& values = domain->mutable_bank().values;
  const auto x = torch::randn({16, 24});
  torch::Tensor target;
  {
    torch::NoGradGuard g;
    const auto student = values.clone();
    values.copy_(torch::randn_like(values));
    target = layer->forward(x);
    values.copy_(student);
  }
  auto loss_now = [&] { return (layer->forward(x) - target).pow(2).sum(); };
  const double before = loss_now().item<double>();
  for (int step = 0; step < 150; ++step) {
    values.mutable_grad() = torch::Tensor();
    loss_now().backward();
    torch::NoGradGuard g;
    const auto grad = values.grad().coalesce();
    values.index_add_(0, grad.indices()[0], -0.2 * grad.values());
  }
  const double after = loss_now().item<double>();
  EXPECT_LT(after, 0.05 * before) << "before " << before << " after " << after;
}

}  // namespace
}  // namespace kvtune

// LoRA: adapters wrap the block linears in place, start as a no-op, train alone, and merge.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "bank_test_util.h"
#include "model/lora.h"
#include "model_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

TEST(ModelLora, FreshAdaptersKeepTheLogitsAndOnlyAdaptersTrain) {
  auto model = test::make_model(test::tiny_config(256), test::test_seed());
  const auto tokens = test::random_tokens(2, 10);
  const auto before = model->forward(tokens).detach();
  const size_t n_before = model->parameters().size();
  const auto adapters = apply_lora(model, /*rank=*/4, /*alpha=*/8.0);
  // 2 blocks x (q, k, v, out, up, down) x (A, B).
  ASSERT_EQ(adapters.size(), 24u);
  EXPECT_EQ(model->parameters().size(), n_before + 24);
  EXPECT_TRUE(has_lora(model));
  const auto after = model->forward(tokens);
  EXPECT_TRUE(torch::equal(after, before));

  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) {
    names.insert(p.key());
    const bool adapter = p.key().find("_lora.") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), adapter) << p.key();
  }
  EXPECT_TRUE(names.count("blocks.0.attn.q.weight")) << "wrapped weights keep their names";
  EXPECT_TRUE(names.count("blocks.1.ffn.down_lora.lora_b"));
  EXPECT_TRUE(names.count("blocks.1.memory.query.weight"));
  for (const auto& a : adapters) EXPECT_TRUE(a.requires_grad());

  after.pow(2).mean().backward();
  const auto& lora = model->blocks()[0]->attn->linears()[0]->lora();
  ASSERT_TRUE(lora->lora_b.grad().defined());
  EXPECT_GT(lora->lora_b.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(model->blocks()[0]->attn->linears()[0]->linear()->weight.grad().defined());
  EXPECT_FALSE(model->token_embedding->weight.grad().defined());

  EXPECT_THAT(error_of([&] { apply_lora(model, 4, 8.0); }), HasSubstr("already has LoRA"));
}

TEST(ModelLora, AdapterComputesTheLowRankUpdateAndMergesIntoTheWeight) {
  torch::manual_seed(test::test_seed());
  torch::nn::Linear base(13, 7);
  LoraLinear lora(base, /*rank=*/3, /*alpha=*/6.0);
  EXPECT_EQ(lora->lora_a.sizes(), (std::vector<int64_t>{3, 13}));
  EXPECT_EQ(lora->lora_b.sizes(), (std::vector<int64_t>{7, 3}));
  EXPECT_EQ(lora->lora_b.abs().sum().item<float>(), 0.0f);
  EXPECT_GT(lora->lora_a.abs().sum().item<float>(), 0.0f);
  EXPECT_FALSE(base->weight.requires_grad());
  {
    torch::NoGradGuard no_grad;
    lora->lora_b.normal_();
  }
  const auto x = torch::randn({5, 13});
  const auto want = x.matmul(base->weight.t()) + base->bias +
                    2.0 * x.matmul(lora->lora_a.t()).matmul(lora->lora_b.t());
  EXPECT_LT(test::rel_error(lora->forward(x), want), 1e-5);
  EXPECT_LT(
      test::rel_error(torch::nn::functional::linear(x, lora->merged_weight(), base->bias), want),
      1e-5);
  EXPECT_THAT(error_of([&] { LoraLinear(base, 0, 1.0); }), HasSubstr("rank must be positive"));
  EXPECT_THAT(error_of([&] { LoraLinear(base, 8, 1.0); }), HasSubstr("rank 8 exceeds"));
}

TEST(ModelLora, MergeKeepsTheFunctionAndRestoresThePlainParameters) {
  auto model = test::make_model(test::tiny_config(256), test::test_seed());
  const size_t n_plain = model->parameters().size();
  apply_lora(model, 2, 4.0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.key().find("lora_b") != std::string::npos) p.value().normal_(0.0, 0.05);
    }
  }
  const auto tokens = test::random_tokens(2, 8);
  torch::NoGradGuard no_grad;
  const auto with_adapters = model->forward(tokens);
  merge_lora(model);
  EXPECT_FALSE(has_lora(model));
  EXPECT_EQ(model->parameters().size(), n_plain);
  EXPECT_LT(test::rel_error(model->forward(tokens), with_adapters), 1e-4);
}

}  // namespace
}  // namespace kvtune

// memory.query_norm: LayerNorm or BatchNorm on the projected queries before the search. Checked
// against torch's own functional norms, saved and reloaded with the model, and a frozen BatchNorm
// keeps its running statistics while a fine-tuning run trains around it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/byte_tokenizer.h"
#include "model/model_config_yaml.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "recipe_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

ModelConfig with_norm(const std::string& norm) {
  auto c = test::micro_config();
  c.memory.query_norm = norm;
  return c;
}

torch::Tensor unit(const torch::Tensor& q) {
  return q / q.norm(2, -1, true).clamp_min(1e-12);
}

TEST(QueryNorm, LayerNormQueriesAreTorchsLayerNormOfEachHead) {
  auto model = test::make_model(with_norm("layernorm"), 5);
  auto layer = model->memory_layers()[0];
  ASSERT_TRUE(layer->query_layer_norm);
  {
    torch::NoGradGuard no_grad;
    layer->query_layer_norm->weight.uniform_(0.5, 1.5);
    layer->query_layer_norm->bias.uniform_(-0.3, 0.3);
  }
  const auto x = torch::randn({3, 7, test::micro_config().d_model});
  layer->set_capture_queries(true);
  layer->forward(x);
  const auto& o = layer->options();
  const auto projected =
      torch::matmul(x, layer->query->weight.t()).reshape({3, 7, o.heads, o.key_dim});
  const auto expected =
      unit(torch::layer_norm(projected, {o.key_dim}, layer->query_layer_norm->weight,
                             layer->query_layer_norm->bias, 1e-5));
  EXPECT_TRUE(torch::allclose(layer->last_queries(), expected, 1e-5, 1e-6));
  // Without the norm the queries differ (the norm is really applied).
  const auto plain = unit(projected);
  EXPECT_FALSE(torch::allclose(layer->last_queries(), plain, 1e-3, 1e-3));
}

TEST(QueryNorm, BatchNormUsesBatchStatisticsOnlyWhileItTrains) {
  auto model = test::make_model(with_norm("batchnorm"), 6);
  auto layer = model->memory_layers()[0];
  ASSERT_TRUE(layer->query_batch_norm);
  const auto& bn = layer->query_batch_norm;
  const auto x = torch::randn({4, 5, test::micro_config().d_model}) * 3 + 1;
  const auto& o = layer->options();
  // Training, norm trainable: normalized with the batch's statistics, running stats move.
  model->train();
  const auto mean0 = bn->running_mean.clone();
  layer->set_capture_queries(true);
  layer->forward(x);
  const auto flat = torch::matmul(x, layer->query->weight.t()).reshape({-1, o.heads * o.key_dim});
  const auto m = flat.mean(0), v = flat.var(0, /*unbiased=*/false);
  const auto expected =
      unit(((flat - m) / torch::sqrt(v + 1e-5)).reshape({4, 5, o.heads, o.key_dim}));
  EXPECT_TRUE(torch::allclose(layer->last_queries(), expected, 1e-4, 1e-5));
  EXPECT_FALSE(torch::equal(bn->running_mean, mean0));
  // Frozen (as every fine-tuning method but full leaves it): running stats stay byte for byte.
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  const auto mean1 = bn->running_mean.clone(), var1 = bn->running_var.clone();
  layer->forward(x);
  EXPECT_TRUE(torch::equal(bn->running_mean, mean1));
  EXPECT_TRUE(torch::equal(bn->running_var, var1));
}

TEST(QueryNorm, SavedAndReloadedWithTheModelAndRefusedWhenUnknown) {
  test::TempDir dir;
  for (const char* norm : {"layernorm", "batchnorm"}) {
    const auto config = with_norm(norm);
    auto model = test::make_model(config, 8);
    model->eval();
    const auto tokens = test::random_tokens(2, 9);
    const auto before = model->forward(tokens);
    save_model(dir.file(norm), model, config, ByteTokenizer());
    auto loaded = load_model(dir.file(norm));
    EXPECT_EQ(loaded.config.memory.query_norm, norm);
    loaded.model->eval();
    EXPECT_TRUE(torch::equal(loaded.model->forward(tokens), before)) << norm;
  }
  // The default writes no query_norm key: configs (hence fingerprints) of models without the
  // option are what they were.
  EXPECT_THAT(to_yaml_string(test::micro_config()),
              ::testing::Not(::testing::HasSubstr("query_norm")));
  const std::string msg = test::error_of([&] { validate(with_norm("rmsnorm"), "m"); });
  EXPECT_THAT(msg, ::testing::HasSubstr("memory.query_norm is 'rmsnorm'"));
}

}  // namespace
}  // namespace kvtune

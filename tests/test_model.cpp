// The host transformer: shapes, causality, memory placement and gradients, and a quick
// check that the tiny model learns.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "bank_test_util.h"
#include "model/byte_tokenizer.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

TEST(ModelTransformer, ForwardShapesOnTheTinyConfig) {
  const uint64_t seed = test::test_seed();
  const ModelConfig config = test::tiny_config();
  auto model = test::make_model(config, seed);
  ASSERT_EQ(model->memory_layers().size(), 1u);
  EXPECT_EQ(model->memory_layers()[0]->banks().size(), 1u);
  const auto logits = model->forward(test::random_tokens(3, 17));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 17, 259}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  // Full length works too; the LM head is the token embedding.
  EXPECT_EQ(model->forward(test::random_tokens(1, config.max_seq_len)).size(1), config.max_seq_len);
  EXPECT_EQ(model->transformer_parameters().size(), model->parameters().size());
  for (const auto& p : model->named_parameters()) {
    EXPECT_THAT(p.key(), ::testing::Not(HasSubstr("lm_head"))) << "the head must be tied";
  }
}

// The sizes quoted in docs/model.md and the configs' comments.
TEST(ModelTransformer, ParameterCountsMatchTheDocs) {
  auto count = [](const std::string& name) {
    TransformerLM model(load_model_config(test::model_config_path(name)));
    int64_t n = 0;
    for (const auto& p : model->transformer_parameters()) n += p.numel();
    return n;
  };
  EXPECT_EQ(count("tiny"), 479232);
  EXPECT_NEAR(static_cast<double>(count("small")), 3.6e6, 0.1e6);
  EXPECT_NEAR(static_cast<double>(count("base")), 27e6, 0.5e6);
}

TEST(ModelTransformer, IsCausal) {
  const uint64_t seed = test::test_seed();
  auto model = test::make_model(test::tiny_config(), seed);
  const int64_t T = 23, t = 9;
  const auto tokens = test::random_tokens(2, T);
  auto changed = tokens.clone();
  changed.index_put_({torch::indexing::Slice(), t},
                     (tokens.index({torch::indexing::Slice(), t}) + 1) % 259);
  torch::NoGradGuard no_grad;
  const auto a = model->forward(tokens), b = model->forward(changed);
  using torch::indexing::Slice;
  EXPECT_LT(test::rel_error(b.index({Slice(), Slice(0, t)}), a.index({Slice(), Slice(0, t)})), 1e-6)
      << "positions before t must not see token t";
  for (int64_t s = t; s < T; ++s) {
    EXPECT_GT((b.index({Slice(), s}) - a.index({Slice(), s})).abs().max().item<float>(), 0.0f)
        << "position " << s << " should see token " << t;
  }
}

TEST(ModelTransformer, BadInputsAreClearErrors) {
  auto model = test::make_model(test::tiny_config(256), test::test_seed());
  EXPECT_THAT(error_of([&] { model->forward(test::random_tokens(1, 129)); }),
              HasSubstr("sequence length 129 is outside [1, max_seq_len = 128]"));
  EXPECT_THAT(error_of([&] {
                model->forward(torch::full({1, 4}, 259, torch::kLong));
              }),
              HasSubstr("token ids span [259, 259] but the vocabulary is [0, 259)"));
  EXPECT_THAT(error_of([&] {
                model->forward(torch::zeros({1, 4}, torch::kInt));
              }),
              HasSubstr("tokens must be an int64 tensor [batch, time]"));
  ModelConfig bad = test::tiny_config();
  bad.n_heads = 5;
  EXPECT_THAT(error_of([&] { TransformerLM m(bad); }), HasSubstr("not divisible by n_heads 5"));
  TransformerLM no_banks(test::tiny_config());
  EXPECT_THAT(error_of([&] { no_banks->forward(test::random_tokens(1, 4)); }),
              HasSubstr("no bank attached"));
}

TEST(ModelMemory, BaseBanksFollowTheConfigAndTheSeed) {
  const uint64_t seed = test::test_seed();
  ModelConfig config = test::tiny_config(300);
  config.n_layers = 3;
  config.memory_blocks = {2, 0};
  auto a = test::make_model(config, seed);
  auto b = test::make_model(config, seed);
  auto c = test::make_model(config, seed + 1);
  ASSERT_EQ(a->memory_layers().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Bank& bank = a->memory_layers()[i]->banks()[0]->bank();
    EXPECT_EQ(bank.size(), 300);
    EXPECT_EQ(bank.meta.key_dim, 32);
    EXPECT_EQ(bank.meta.name, "base_" + std::to_string(i));
    EXPECT_FALSE(bank.meta.trainable);
    EXPECT_FALSE(bank.keys.requires_grad());
    EXPECT_NO_THROW(validate_bank(bank, "base bank"));
    EXPECT_TRUE(test::same_bits(bank.keys, b->memory_layers()[i]->banks()[0]->bank().keys));
    EXPECT_FALSE(torch::equal(bank.keys, c->memory_layers()[i]->banks()[0]->bank().keys));
  }
  EXPECT_FALSE(torch::equal(a->memory_layers()[0]->banks()[0]->bank().keys,
                            a->memory_layers()[1]->banks()[0]->bank().keys));
  EXPECT_THAT(error_of([&] { a->attach_base_banks(seed); }), HasSubstr("already has a bank"));
}

class ModelMemoryPlacement : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelMemoryPlacement, RunsAndGradientsReachQueriesAndTrainableBanks) {
  const uint64_t seed = test::test_seed();
  ModelConfig config = test::tiny_config(512);
  config.memory.attention.k = 8;
  config.memory_placement = GetParam();
  auto model = test::make_model(config, seed);
  const bool replace = GetParam() == "replace_ffn";
  EXPECT_TRUE(!model->blocks()[0]->ffn.is_empty());
  EXPECT_EQ(model->blocks()[1]->ffn.is_empty(), replace);
  EXPECT_FALSE(model->blocks()[1]->memory.is_empty());

  auto layer = model->memory_layers()[0];
  auto bank = layer->banks()[0];
  bank->set_trainable(true);
  const auto tokens = test::random_tokens(2, 13);
  const auto logits = model->forward(tokens);
  torch::nn::functional::cross_entropy(logits.reshape({-1, 259}), tokens.reshape({-1})).backward();
  const auto qgrad = layer->query->weight.grad();
  ASSERT_TRUE(qgrad.defined());
  EXPECT_GT(qgrad.abs().sum().item<double>(), 0.0);
  for (const auto& t : {bank->bank().keys, bank->bank().values}) {
    ASSERT_TRUE(t.grad().defined());
    EXPECT_TRUE(t.grad().is_sparse());
    EXPECT_GT(t.grad().coalesce().values().abs().sum().item<double>(), 0.0);
  }
  EXPECT_TRUE(model->blocks()[0]->attn->linears()[0]->linear()->weight.grad().defined());
}

INSTANTIATE_TEST_SUITE_P(Model, ModelMemoryPlacement,
                         ::testing::Values("beside_ffn", "replace_ffn"));

TEST(ModelMemory, FrozenBanksGetNoGradient) {
  auto model = test::make_model(test::tiny_config(256), test::test_seed());
  const auto tokens = test::random_tokens(1, 9);
  model->forward(tokens).pow(2).mean().backward();
  const Bank& bank = model->memory_layers()[0]->banks()[0]->bank();
  EXPECT_FALSE(bank.keys.grad().defined());
  EXPECT_FALSE(bank.values.grad().defined());
  EXPECT_TRUE(model->memory_layers()[0]->query->weight.grad().defined());
}

TEST(ModelMemory, ScaleZeroMeansSqrtKeyDim) {
  const uint64_t seed = test::test_seed();
  auto logits_with_scale = [&](double scale) {
    ModelConfig config = test::tiny_config(256);
    config.memory.attention.scale = scale;
    auto model = test::make_model(config, seed);  // same weights and bank for every scale
    torch::manual_seed(seed);
    torch::NoGradGuard no_grad;
    return model->forward(test::random_tokens(2, 11));
  };
  const auto zero = logits_with_scale(0.0);
  EXPECT_TRUE(torch::equal(zero, logits_with_scale(std::sqrt(32.0))));
  EXPECT_FALSE(torch::equal(zero, logits_with_scale(1.0)));
}

TEST(ModelLearning, TinyModelOverfitsOneSentence) {
  torch::manual_seed(test::test_seed());
  ModelConfig config = test::tiny_config(1024);
  auto model = test::make_model(config, test::test_seed());
  const ByteTokenizer tok;
  const auto ids = tok.encode("Helium is the second element; its symbol is He.", true, true);
  const auto tokens = torch::tensor(ids, torch::kLong).unsqueeze(0);
  using torch::indexing::Slice;
  const auto inputs = tokens.index({Slice(), Slice(0, -1)});
  const auto targets = tokens.index({Slice(), Slice(1, torch::indexing::None)}).reshape({-1});
  torch::optim::Adam adam(model->transformer_parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 50; ++step) {
    adam.zero_grad();
    const auto loss = torch::nn::functional::cross_entropy(
        model->forward(inputs).reshape({-1, config.vocab_size}), targets);
    loss.backward();
    adam.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::cout << "[ loss     ] " << first << " -> " << last << "\n";
  EXPECT_LT(last, 0.5 * first);
}

}  // namespace
}  // namespace kvtune

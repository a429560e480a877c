// Model configs: the shipped YAML files, lossless round trips, strict keys, validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "bank_test_util.h"
#include "model/model_config_yaml.h"
#include "model_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

TEST(ModelConfigYaml, ShippedConfigsLoadAndRoundTrip) {
  for (const std::string name : {"tiny", "small", "base"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = load_model_config(test::model_config_path(name));
    EXPECT_EQ(c.name, name);
    const std::string text = to_yaml_string(c);
    const ModelConfig back = model_config_from_yaml(YAML::Load(text), "round trip");
    EXPECT_EQ(to_yaml_string(back), text);
  }
  const ModelConfig tiny = load_model_config(test::model_config_path("tiny"));
  EXPECT_EQ(tiny.d_model, 128);
  EXPECT_EQ(tiny.n_layers, 2);
  EXPECT_EQ(tiny.n_heads, 4);
  EXPECT_EQ(tiny.d_ff, 512);
  EXPECT_EQ(tiny.max_seq_len, 128);
  EXPECT_EQ(tiny.memory_blocks, std::vector<int64_t>{1});
  EXPECT_EQ(tiny.memory_placement, "beside_ffn");
  EXPECT_EQ(tiny.memory.base_bank_size, 4096);
  EXPECT_EQ(tiny.memory.attention.k, 32);
  EXPECT_EQ(tiny.memory.index.factory, "Flat");
  const ModelConfig base = load_model_config(test::model_config_path("base"));
  EXPECT_EQ(base.memory.base_bank_size, int64_t{1} << 20);
  EXPECT_EQ(base.memory.index.factory, "IVF4096,Flat");
  EXPECT_EQ(base.memory.index.nprobe, 64);
  EXPECT_EQ(base.memory_blocks, (std::vector<int64_t>{3, 7}));
}

TEST(ModelConfigYaml, EveryFieldSurvivesARoundTripThroughText) {
  ModelConfig c;
  c.name = "odd";
  c.vocab_size = 300;
  c.d_model = 96;
  c.n_layers = 5;
  c.n_heads = 3;
  c.d_ff = 200;
  c.max_seq_len = 77;
  c.dropout = 0.1;
  c.memory_blocks = {4, 0};
  c.memory_placement = "replace_ffn";
  c.memory.heads = 2;
  c.memory.key_dim = 24;
  c.memory.value_dim = 40;
  c.memory.base_bank_size = 999;
  c.memory.learned_keys = true;
  c.memory.attention.estimator = "dense";
  c.memory.attention.k = 7;
  c.memory.attention.scale = 2.5 / 3.0;
  c.memory.index.factory = "HNSW32";
  c.memory.index.nprobe = 3;
  c.memory.index.ef_search = 48;
  c.memory.index.rebuild_interval = 11;
  c.memory.index.train_size = 5000;
  c.memory.index.seed = 18446744073709551557ULL;
  const ModelConfig b = model_config_from_yaml(YAML::Load(to_yaml_string(c)), "text");
  EXPECT_EQ(b.name, c.name);
  EXPECT_EQ(b.vocab_size, c.vocab_size);
  EXPECT_EQ(b.d_model, c.d_model);
  EXPECT_EQ(b.n_layers, c.n_layers);
  EXPECT_EQ(b.n_heads, c.n_heads);
  EXPECT_EQ(b.d_ff, c.d_ff);
  EXPECT_EQ(b.max_seq_len, c.max_seq_len);
  EXPECT_EQ(b.dropout, c.dropout);
  EXPECT_EQ(b.memory_blocks, c.memory_blocks);
  EXPECT_EQ(b.memory_placement, c.memory_placement);
  EXPECT_EQ(b.memory.heads, c.memory.heads);
  EXPECT_EQ(b.memory.key_dim, c.memory.key_dim);
  EXPECT_EQ(b.memory.value_dim, c.memory.value_dim);
  EXPECT_EQ(b.memory.base_bank_size, c.memory.base_bank_size);
  EXPECT_EQ(b.memory.learned_keys, c.memory.learned_keys);
  EXPECT_EQ(b.memory.attention.estimator, c.memory.attention.estimator);
  EXPECT_EQ(b.memory.attention.k, c.memory.attention.k);
  EXPECT_EQ(b.memory.attention.scale, c.memory.attention.scale);
  EXPECT_EQ(b.memory.index.factory, c.memory.index.factory);
  EXPECT_EQ(b.memory.index.nprobe, c.memory.index.nprobe);
  EXPECT_EQ(b.memory.index.ef_search, c.memory.index.ef_search);
  EXPECT_EQ(b.memory.index.rebuild_interval, c.memory.index.rebuild_interval);
  EXPECT_EQ(b.memory.index.train_size, c.memory.index.train_size);
  EXPECT_EQ(b.memory.index.seed, c.memory.index.seed);
}

TEST(ModelConfigYaml, UnknownKeysAndWrongTypesAreErrors) {
  EXPECT_THAT(error_of([] { model_config_from_yaml(YAML::Load("d_modle: 64"), "m.yaml"); }),
              HasSubstr("m.yaml: unknown key 'd_modle'"));
  EXPECT_THAT(error_of([] {
                model_config_from_yaml(YAML::Load("memory: {index: {nprobes: 4}}"), "m.yaml");
              }),
              HasSubstr("unknown key 'memory.index.nprobes'"));
  EXPECT_THAT(error_of([] { model_config_from_yaml(YAML::Load("d_model: wide"), "m.yaml"); }),
              HasSubstr("key 'd_model' must be an integer"));
  EXPECT_THAT(error_of([] { model_config_from_yaml(YAML::Load("memory: 3"), "m.yaml"); }),
              HasSubstr("key 'memory' must be a map"));
}

TEST(ModelConfigYaml, OverridesApplyOnTopOfANamedConfig) {
  ModelConfig c = load_model_config(test::model_config_path("tiny"));
  apply_model_yaml(YAML::Load("d_model: 64\nmemory: {k: 8}"), "overrides", c);
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.memory.attention.k, 8);
  EXPECT_EQ(c.n_layers, 2) << "keys not overridden keep the named config's value";
}

struct BadConfig {
  const char* yaml;
  const char* message;
};

TEST(ModelConfigYaml, EachValidationErrorNamesTheProblem) {
  const BadConfig cases[] = {
      {"d_model: 0", "key 'd_model' must be positive, got 0"},
      {"n_layers: -1", "key 'n_layers' must be positive"},
      {"d_ff: 0", "key 'd_ff' must be positive"},
      {"max_seq_len: 0", "key 'max_seq_len' must be positive"},
      {"memory: {key_dim: 0}", "key 'memory.key_dim' must be positive"},
      {"memory: {base_bank_size: 0}", "key 'memory.base_bank_size' must be positive"},
      {"d_model: 130\nn_heads: 4", "d_model 130 is not divisible by n_heads 4"},
      {"memory_blocks: [2]", "memory_blocks holds block 2, outside [0, n_layers) = [0, 2)"},
      {"memory_blocks: [-1]", "memory_blocks holds block -1"},
      {"memory_blocks: [1, 1]", "lists block 1 twice"},
      {"memory_placement: after_ffn", "choose one of beside_ffn, replace_ffn"},
      {"memory: {k: 33, base_bank_size: 32}",
       "memory.k 33 is larger than memory.base_bank_size 32"},
      {"memory: {estimator: sampled}", "memory.estimator 'sampled' is unknown: choose one of"},
      {"vocab_size: 258", "key 'vocab_size' is 258"},
      {"memory: {scale: -1}", "memory.scale must be finite and >= 0"},
      {"dropout: 1.0", "key 'dropout' must be in [0, 1)"},
      {"memory: {index: {factory: ''}}", "key 'memory.index.factory' is empty"},
      {"memory: {index: {nprobe: -2}}", "must be >= 0"},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.yaml);
    const std::string msg =
        error_of([&] { model_config_from_yaml(YAML::Load(bad.yaml), "bad.yaml"); });
    EXPECT_THAT(msg, HasSubstr("bad.yaml: "));
    EXPECT_THAT(msg, HasSubstr(bad.message));
  }
  EXPECT_NO_THROW(model_config_from_yaml(YAML::Load("memory_blocks: []"), "ok.yaml"));
}

}  // namespace
}  // namespace kvtune

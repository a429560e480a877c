// Model folders: save -> load is bit-identical, and broken folders give clear errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "bank/indexed_bank.h"
#include "bank_test_util.h"
#include "model/byte_tokenizer.h"
#include "model/lora.h"
#include "model/model_io.h"
#include "model/module_state.h"
#include "model_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Replaces the first `from` in the file by `to`; fails the test when `from` is absent.
void edit_file(const std::string& path, const std::string& from, const std::string& to) {
  std::string text = read_text(path);
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << path;
  text.replace(at, from.size(), to);
  std::ofstream(path, std::ios::trunc) << text;
}

TEST(ModelIo, SaveThenLoadIsBitIdentical) {
  const uint64_t seed = test::test_seed();
  const ModelConfig config = test::tiny_config();
  auto model = test::make_model(config, seed);
  test::TempDir dir;
  const std::string folder = dir.file("model");
  save_model(folder, model, config, ByteTokenizer());
  for (const char* name :
       {"config.yaml", "tokenizer.json", "model.pt", "bank_0.h5", "bank_0.faiss"}) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(folder) / name)) << name;
  }
  LoadedModel loaded = load_model(folder);
  EXPECT_EQ(to_yaml_string(loaded.config), to_yaml_string(config));
  EXPECT_EQ(loaded.tokenizer->type(), "byte");

  const auto named = model->named_parameters();
  const auto loaded_named = loaded.model->named_parameters();
  ASSERT_EQ(named.size(), loaded_named.size());
  for (const auto& p : named) {
    EXPECT_TRUE(test::same_bits(loaded_named[p.key()], p.value())) << p.key();
  }
  const auto& want = model->memory_layers()[0]->banks()[0];
  const auto& got = loaded.model->memory_layers()[0]->banks()[0];
  test::expect_same_bank(got->bank(), want->bank());
  EXPECT_EQ(got->index_config().factory, "Flat");

  const auto tokens = test::random_tokens(2, 19);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(test::same_bits(loaded.model->forward(tokens), model->forward(tokens)));
  EXPECT_EQ(model_fingerprint(loaded.model), model_fingerprint(model));
}

TEST(ModelIo, TamperedConfigNamesTheTensorAndBothShapes) {
  const ModelConfig config = test::tiny_config(128);
  auto model = test::make_model(config, test::test_seed());
  test::TempDir dir;
  save_model(dir.file("m"), model, config, ByteTokenizer());
  edit_file(dir.file("m/config.yaml"), "d_model: 128", "d_model: 256");
  const std::string msg = error_of([&] { load_model(dir.file("m")); });
  EXPECT_THAT(msg, HasSubstr("model.pt"));
  EXPECT_THAT(msg, HasSubstr("tensor 'token_embedding.weight' has shape [259, 128] in the file "
                             "but [259, 256] in the model"));
}

TEST(ModelIo, ConfigWithoutASavedLayerIsAnError) {
  const ModelConfig config = test::tiny_config(128);
  auto model = test::make_model(config, test::test_seed());
  test::TempDir dir;
  save_model(dir.file("m"), model, config, ByteTokenizer());
  edit_file(dir.file("m/config.yaml"), "memory_blocks: [1]", "memory_blocks: []");
  EXPECT_THAT(error_of([&] { load_model(dir.file("m")); }),
              HasSubstr("holds module 'blocks.1.memory' that the model built from the config "
                        "does not have"));
}

TEST(ModelIo, MissingFolderOrFilesAreNamed) {
  test::TempDir dir;
  EXPECT_THAT(error_of([&] { load_model(dir.file("nowhere")); }),
              HasSubstr("model folder " + dir.file("nowhere") + " does not exist"));
  const ModelConfig config = test::tiny_config(128);
  auto model = test::make_model(config, test::test_seed());
  for (const std::string name : {"config.yaml", "tokenizer.json", "model.pt", "bank_0.h5"}) {
    SCOPED_TRACE(name);
    save_model(dir.file("m"), model, config, ByteTokenizer());
    fs::remove(dir.file("m/" + name));
    EXPECT_THAT(error_of([&] { load_model(dir.file("m")); }), HasSubstr("has no " + name));
  }
}

TEST(ModelIo, BankWithOtherDimsIsRefused) {
  const ModelConfig config = test::tiny_config(128);
  auto model = test::make_model(config, test::test_seed());
  test::TempDir dir;
  save_model(dir.file("m"), model, config, ByteTokenizer());
  IndexedBank(make_random_bank("wrong", 64, /*key_dim=*/16, /*value_dim=*/32, 1, false),
              IndexConfig{})
      .save(dir.file("m/bank_0.h5"));
  const std::string msg = error_of([&] { load_model(dir.file("m")); });
  EXPECT_THAT(msg, HasSubstr("bank_0.h5: bank has key_dim 16 and value_dim 32"));
  EXPECT_THAT(msg, HasSubstr("memory layer 0 expects key_dim 32"));
}

TEST(ModelIo, SaveRefusesAdaptersForeignConfigsAndMissingBanks) {
  const ModelConfig config = test::tiny_config(128);
  auto model = test::make_model(config, test::test_seed());
  test::TempDir dir;
  ModelConfig other = config;
  other.d_ff = 256;
  EXPECT_THAT(error_of([&] { save_model(dir.file("a"), model, other, ByteTokenizer()); }),
              HasSubstr("differs from the model's own config"));
  TransformerLM bare(config);
  EXPECT_THAT(error_of([&] { save_model(dir.file("b"), bare, config, ByteTokenizer()); }),
              HasSubstr("memory layer 0 has no bank"));
  apply_lora(model, 2, 2.0);
  EXPECT_THAT(error_of([&] { save_model(dir.file("c"), model, config, ByteTokenizer()); }),
              HasSubstr("call merge_lora() first"));
}

TEST(ModelIo, ModuleStateRefusesOtherFiles) {
  test::TempDir dir;
  std::ofstream(dir.file("junk.pt")) << "not a zip archive";
  torch::nn::Linear linear(3, 2);
  EXPECT_THAT(error_of([&] { load_module_state(*linear, dir.file("junk.pt")); }),
              HasSubstr("not a readable weights file"));
  save_module_state(*torch::nn::Linear(3, 4), dir.file("other.pt"));
  EXPECT_THAT(error_of([&] { load_module_state(*linear, dir.file("other.pt")); }),
              HasSubstr("tensor 'weight' has shape [4, 3] in the file but [2, 3] in the model"));
  torch::serialize::OutputArchive plain;
  linear->save(plain);
  plain.save_to(dir.file("plain.pt"));
  EXPECT_THAT(error_of([&] { load_module_state(*linear, dir.file("plain.pt")); }),
              HasSubstr("not a kvtune weights file"));
}

TEST(ModelIo, FingerprintFollowsConfigAndBankKeys) {
  const uint64_t seed = test::test_seed();
  const ModelConfig config = test::tiny_config(128);
  auto a = test::make_model(config, seed);
  auto b = test::make_model(config, seed);
  auto c = test::make_model(config, seed + 1);
  const std::string fa = model_fingerprint(a);
  EXPECT_EQ(fa.size(), 16u);
  EXPECT_EQ(fa.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(model_fingerprint(b), fa);
  EXPECT_NE(model_fingerprint(c), fa) << "other base bank keys";
  ModelConfig renamed = config;
  renamed.name = "tiny2";
  EXPECT_NE(model_fingerprint(renamed, {a->memory_layers()[0]->banks()[0]->bank().keys}), fa);
  EXPECT_EQ(model_fingerprint(config, {a->memory_layers()[0]->banks()[0]->bank().keys}), fa);
}

}  // namespace
}  // namespace kvtune

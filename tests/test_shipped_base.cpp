// The shipped base (configs/bases/pretrain-general: the run folder `kvtune pretrain
// recipes/pretrain-general.yaml` made, which tools/run starts from): it still loads with this
// build, is the tiny model of configs/models/tiny.yaml, and has valid background counts. A change
// of the model format or config that would break tools/run fails here first.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/model_config_yaml.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "test_util.h"
#include "train/background_counts.h"
#include "train/recipe_io.h"

namespace kvtune {
namespace {

TEST(ShippedBase, LoadsAsTheTinyModelWithBackgroundCounts) {
  const std::string dir = test::source_dir() + "/configs/bases/pretrain-general";
  ASSERT_TRUE(std::filesystem::exists(dir + "/model/model.pt")) << dir;
  const auto loaded = load_model(dir + "/model");
  EXPECT_EQ(to_yaml_string(loaded.config), to_yaml_string(test::tiny_config()));
  const auto counts = read_background(dir + "/model/" + kBackgroundFile, loaded.model);
  EXPECT_GT(counts.sequences, 0);
  // The run folder's recipe is the shipped pretraining recipe (threads aside, and the keys of
  // fine-tuning methods, which pretraining does not read).
  auto shipped = load_recipe(test::source_dir() + "/recipes/pretrain-general.yaml", {},
                             test::source_dir() + "/configs");
  auto made = load_recipe(dir + "/recipe.yaml", {}, test::source_dir() + "/configs");
  made.train.threads = shipped.train.threads;
  made.name = shipped.name;
  made.sparse = shipped.sparse;
  made.domain_bank = shipped.domain_bank;
  made.lora = shipped.lora;
  EXPECT_EQ(YAML::Dump(recipe_to_yaml(made)), YAML::Dump(recipe_to_yaml(shipped)));
}

}  // namespace
}  // namespace kvtune

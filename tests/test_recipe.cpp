// Recipes: layered loading (defaults, file, --set), strict keys, validation, resolved round trip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "recipe_test_util.h"
#include "train/recipe_io.h"

namespace kvtune::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(RecipeShipped, EveryRecipeLoadsAndValidates) {
  KVTUNE_REQUIRE_DICTD("wn", "foldoc", "jargon", "elements");
  RecipeScratch scratch;
  int count = 0;
  for (const auto& e : fs::directory_iterator(source_dir() + "/recipes")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    const std::string path = e.path().string();
    Recipe r = load_recipe(path, {}, configs_dir());
    EXPECT_EQ(r.name, e.path().stem().string());
    if (r.mode == "finetune") r = load_recipe(path, {"base=" + scratch.base()}, configs_dir());
    EXPECT_NO_THROW(validate_recipe(r, path));
    ++count;
  }
  EXPECT_GE(count, 4);
}

TEST(RecipeShipped, FoldocRecipeSaysWhatTheIssueAsks) {
  const Recipe r = load_recipe(source_dir() + "/recipes/foldoc.yaml", {}, configs_dir());
  EXPECT_EQ(r.mode, "finetune");
  EXPECT_EQ(r.method, "memory");
  EXPECT_EQ(r.base, "runs/pretrain-general");
  EXPECT_EQ(r.data.domain, "foldoc");
  EXPECT_EQ(r.domain_bank.size, 2048);
  EXPECT_EQ(r.domain_bank.key_init, "kmeans");
  EXPECT_EQ(r.domain_bank.value_init, "zero");
  EXPECT_TRUE(r.domain_bank.train_query);
  EXPECT_TRUE(r.domain_bank.attach.empty());
  EXPECT_EQ(r.domain_bank.index.factory, "Flat");
  EXPECT_EQ(r.backward, "exact");
  const Recipe p = load_recipe(source_dir() + "/recipes/pretrain-general.yaml", {}, configs_dir());
  EXPECT_EQ(p.mode, "pretrain");
  EXPECT_EQ(p.data.general, std::vector<std::string>{"wn"});
  EXPECT_EQ(
      load_recipe(source_dir() + "/recipes/elements-facts.yaml", {}, configs_dir()).data.domain,
      "elements-facts");
}

TEST(RecipeLoad, EmptyFileGivesDefaultsAndTheStemAsName) {
  RecipeScratch scratch;
  const Recipe r = scratch.load("", {}, "my-run.yaml");
  const Recipe d;
  EXPECT_EQ(r.name, "my-run");
  EXPECT_EQ(r.mode, d.mode);
  EXPECT_EQ(r.train.steps, d.train.steps);
  EXPECT_EQ(r.data.general, d.data.general);
  EXPECT_EQ(r.optim.lr, d.optim.lr);
  EXPECT_EQ(r.domain_bank.index.factory, "Flat");
  EXPECT_EQ(r.model_config.name, "tiny");
  EXPECT_EQ(scratch.load("name: other\n", {}, "x.yaml").name, "other");
}

TEST(RecipeErrors, UnknownKeys) {
  RecipeScratch scratch;
  const std::string path = scratch.write_recipe("typo.yaml", "stepz: 5\n");
  EXPECT_THAT(error_of([&] { load_recipe(path, {}, configs_dir()); }),
              AllOf(HasSubstr(path), HasSubstr("unknown key 'stepz'"), HasSubstr("train")));
  EXPECT_THAT(error_of([&] { scratch.load("train:\n  stepz: 5\n"); }),
              AllOf(HasSubstr("r.yaml"), HasSubstr("unknown key 'train.stepz'"),
                    HasSubstr("valid keys here:"), HasSubstr("steps")));
  EXPECT_THAT(error_of([&] { scratch.load("domain_bank:\n  index:\n    nprob: 3\n"); }),
              HasSubstr("unknown key 'domain_bank.index.nprob'"));
  // A model_overrides key that is not a scalar: the model reader's unknown key, not a yaml-cpp
  // exception from the merge.
  EXPECT_THAT(error_of([&] { scratch.load("model_overrides:\n  [1, 2]: 3\n"); }),
              HasSubstr("unknown key '[1, 2]'"));
}

TEST(RecipeErrors, WrongTypes) {
  RecipeScratch scratch;
  EXPECT_THAT(error_of([&] { scratch.load("train:\n  steps: abc\n"); }),
              AllOf(HasSubstr("r.yaml"), HasSubstr("'train.steps' must be an integer")));
  EXPECT_THAT(error_of([&] { scratch.load("optim:\n  lr: fast\n"); }),
              HasSubstr("'optim.lr' must be a number"));
  EXPECT_THAT(error_of([&] { scratch.load("train: 5\n"); }),
              HasSubstr("key 'train' must be a map"));
  EXPECT_THAT(error_of([&] { scratch.load("data:\n  general: {a: b}\n"); }),
              HasSubstr("'data.general' must be a list"));
  EXPECT_THAT(error_of([&] { scratch.load("model_overrides: 5\n"); }),
              HasSubstr("'model_overrides' must be a map"));
}

TEST(RecipeErrors, NamesOutsideTheirSets) {
  RecipeScratch scratch;
  EXPECT_THAT(
      error_of([&] { scratch.load_and_validate({"method=memroy"}); }),
      AllOf(HasSubstr("key 'method' is 'memroy'"), HasSubstr("memory, sparse, full, lora")));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"mode=train"}); }),
              HasSubstr("pretrain, finetune"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"backward=approximate"}); }),
              HasSubstr("exact, sampled, dense"));
  EXPECT_NO_THROW(scratch.load_and_validate({"backward=sampled"}));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"attention.estimator=gumble"}); }),
              AllOf(HasSubstr("attention.estimator"), HasSubstr("gumbel")));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"domain_bank.key_init=zeros"}); }),
              HasSubstr("domain_bank.key_init"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"train.device=tpu"}); }),
              HasSubstr("cpu, cuda"));
}

// Method sparse's own keys, checked by its Method::validate.
TEST(RecipeErrors, SparseMethodKeys) {
  RecipeScratch scratch;
  EXPECT_NO_THROW(scratch.load_and_validate({"method=sparse"}));
  EXPECT_NO_THROW(scratch.load_and_validate(
      {"method=sparse", "sparse.optimizer=adam", "sparse.train=values+keys", "sparse.top_t=3"}));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"method=sparse", "sparse.top_t=0"}, "'sparse.top_t' must be > 0"},
      {{"method=sparse", "sparse.train=keys"}, "values, values+keys"},
      {{"method=sparse", "sparse.optimizer=lbfgs"}, "adam, sgd"},
      {{"method=sparse", "optim.bank_lr=0"}, "'optim.bank_lr' must be > 0"},
      {{"method=sparse", "domain_bank.attach=[x.h5]"}, "for method memory"}};
  for (const auto& [sets, expected] : cases) {
    const auto& s = sets;  // C++17 lambdas cannot capture a structured binding
    EXPECT_THAT(error_of([&] { scratch.load_and_validate(s); }), HasSubstr(expected))
        << sets.back();
  }
  EXPECT_THAT(error_of([&] { scratch.load("sparse:\n  t: 5\n"); }), HasSubstr("sparse.t"));
}

// train.shard_base_banks: what a sharded base bank and the sharded op support.
TEST(RecipeErrors, ShardedBaseBanks) {
  RecipeScratch scratch;
  for (const std::string method : {"memory", "sparse", "full", "lora"}) {
    EXPECT_NO_THROW(scratch.load_and_validate({"train.shard_base_banks=true", "method=" + method}))
        << method;
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"mode=pretrain", "base=", "data.domain="},
       "pretraining trains every row of the base banks"},
      {{"attention.estimator=gumbel"}, "supports topk only; set attention.estimator: topk"},
      {{"backward=sampled"}, "supports backward exact only"},
      {{"attention.learn_scale=true"}, "takes a fixed scale"}};
  for (const auto& [sets, expected] : cases) {
    auto s = sets;
    s.push_back("train.shard_base_banks=true");
    EXPECT_THAT(error_of([&] { scratch.load_and_validate(s); }),
                AllOf(HasSubstr("'train.shard_base_banks' is true"), HasSubstr(expected)))
        << sets.front();
    EXPECT_NO_THROW(scratch.load_and_validate(sets)) << sets.front();
  }
}

TEST(RecipeErrors, OutOfRange) {
  RecipeScratch scratch;
  EXPECT_NO_THROW(scratch.load_and_validate({}));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"data.held_out_fraction=1.0", "must be in [0, 1)"},
      {"data.held_out_fraction=-0.1", "must be in [0, 1)"},
      {"train.steps=0", "'train.steps' must be > 0"},
      {"train.batch_size=-4", "'train.batch_size' must be > 0"},
      {"data.seq_len=0", "'data.seq_len' must be > 0"},
      {"optim.lr=0", "'optim.lr' must be > 0"},
      {"optim.bank_lr=-1", "'optim.bank_lr' must be > 0"},
      {"train.eval_every=-1", "'train.eval_every' must be >= 0"},
      {"data.seq_len=129", "max_seq_len 128"},
      {"domain_bank.size=16", "fewer slots than the model's memory.k = 32"},
      {"domain_bank.index.nprobe=-1", "'domain_bank.index.nprobe' must be >= 0"},
      {"attention.k=-1", "'attention.k' must be >= 0"},
      {"attention.samples=0", "'attention.samples' must be > 0"},
      {"attention.groups=0", "'attention.groups' must be in [1, attention.samples = 128]"},
      {"attention.tail_samples=-2", "'attention.tail_samples' must be >= 0"},
      {"attention.backward_samples=0", "'attention.backward_samples' must be > 0"},
      {"domain_bank.init=no-such-bank.h5",
       "'domain_bank.init' names 'no-such-bank.h5', which is not a file"},
      {"data.domain_mix=[no-such-corpus]", "data.domain_mix"},
      {"domain_bank.attach=[no-such-bank.h5]",
       "'domain_bank.attach' names 'no-such-bank.h5', which is not a file"},
  };
  for (const auto& [set, message] : cases) {
    const auto& s = set;  // C++17 lambdas cannot capture a structured binding
    EXPECT_THAT(error_of([&] { scratch.load_and_validate({s}); }), HasSubstr(message)) << set;
  }
  EXPECT_THAT(error_of([&] {
                scratch.load_and_validate({"method=lora", "lora.rank=0"});
              }),
              HasSubstr("'lora.rank' must be >= 1"));
  // Each mode checks what it uses: a LoRA rank does not matter to the memory method.
  EXPECT_NO_THROW(scratch.load_and_validate({"lora.rank=0"}));
  EXPECT_NO_THROW(scratch.load_and_validate({"domain_bank.size=16", "method=full"}));
  // Attached banks serve the memory method only: other methods would save them as their own.
  const std::string bank = scratch.file("a.h5");
  std::ofstream(bank) << "x";
  EXPECT_NO_THROW(scratch.load_and_validate({"domain_bank.attach=[" + bank + "]"}));
  EXPECT_THAT(error_of([&] {
                scratch.load_and_validate({"domain_bank.attach=[" + bank + "]", "method=full"});
              }),
              HasSubstr("'domain_bank.attach' needs mode finetune and method memory"));
}

TEST(RecipeErrors, MissingCorpus) {
  RecipeScratch scratch;
  const std::string missing = scratch.file("nope.txt");
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"data.domain=" + missing}); }),
              AllOf(HasSubstr("data.domain"), HasSubstr("corpus file '" + missing),
                    HasSubstr("does not exist")));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"data.general=[wn2]"}); }),
              AllOf(HasSubstr("data.general"), HasSubstr("'wn2' is not a known corpus")));
  // An extra package is not a broken setup: a skip, under CI=true too (tools/setup does not
  // install dict-gcide).
  if (missing_dictd({"gcide"}).empty())
    GTEST_SKIP() << "dict-gcide is installed: cannot test a missing dictd";
  EXPECT_THAT(
      error_of([&] { scratch.load_and_validate({"data.domain=gcide"}); }),
      AllOf(HasSubstr("corpus 'gcide' not found"), HasSubstr("install Debian package dict-gcide")));
}

TEST(RecipeErrors, MissingBase) {
  RecipeScratch scratch;
  const std::string expected =
      "base 'runs/x' is not a pretrained run folder (model/config.yaml missing): run `kvtune "
      "pretrain "
      "recipes/pretrain-general.yaml` first";
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"base=runs/x"}); }), HasSubstr(expected));
  fs::create_directories(scratch.file("empty_run"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"base=" + scratch.file("empty_run")}); }),
              HasSubstr("model/config.yaml missing"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"base="}); }),
              HasSubstr("key 'base' is required for finetune"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"data.domain="}); }),
              HasSubstr("'data.domain' is required for finetune"));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"mode=pretrain"}); }),
              HasSubstr("key 'base' is for finetune recipes"));
}

TEST(RecipeErrors, DomainBankDimsMustMatchTheModel) {
  RecipeScratch scratch;
  EXPECT_NO_THROW(
      scratch.load_and_validate({"domain_bank.key_dim=32", "domain_bank.value_dim=32"}));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"domain_bank.key_dim=64"}); }),
              AllOf(HasSubstr("'domain_bank.key_dim' is 64"), HasSubstr("memory.key_dim 32")));
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"domain_bank.value_dim=16"}); }),
              AllOf(HasSubstr("'domain_bank.value_dim' is 16"), HasSubstr("memory.value_dim 32")));
  // The model side moves with model_overrides.
  EXPECT_NO_THROW(
      scratch.load_and_validate({"domain_bank.key_dim=64", "model_overrides.memory.key_dim=64"}));
}

TEST(RecipeErrors, CudaDeviceInACpuBuild) {
#ifdef KVTUNE_WITH_CUDA
  GTEST_SKIP() << "built with CUDA";
#else
  RecipeScratch scratch;
  EXPECT_THAT(error_of([&] { scratch.load_and_validate({"train.device=cuda"}); }),
              HasSubstr("built without CUDA"));
#endif
}

TEST(RecipeSet, OverridesChangeValues) {
  RecipeScratch scratch;
  const std::string yaml = "train:\n  steps: 300\ndomain_bank:\n  index: ivf\n";
  const Recipe r =
      scratch.load(yaml, {"train.steps=500", "optim.lr=0.5", "data.general=[wn,foldoc]",
                          "data.domain=jargon", "train.steps=700", "domain_bank.index.nprobe=7",
                          "model_overrides.max_seq_len=256", "name=renamed"});
  EXPECT_EQ(r.train.steps, 700);  // the last --set wins
  EXPECT_EQ(r.optim.lr, 0.5);
  EXPECT_EQ(r.data.general, (std::vector<std::string>{"wn", "foldoc"}));
  EXPECT_EQ(r.data.domain, "jargon");
  EXPECT_EQ(r.domain_bank.index.factory, "IVF256,Flat");  // from configs/index/ivf.yaml
  EXPECT_EQ(r.domain_bank.index.nprobe, 7);
  EXPECT_EQ(r.model_config.max_seq_len, 256);
  EXPECT_EQ(r.model_config.memory.key_dim, 32);  // the rest of the model file stays
  EXPECT_EQ(r.name, "renamed");
  EXPECT_EQ(scratch.load("", {"domain_bank.index=hnsw"}).domain_bank.index.ef_search, 160);
  EXPECT_EQ(scratch.load("", {"data.general=gcide"}).data.general,
            std::vector<std::string>{"gcide"});
}

TEST(RecipeSet, BadSyntax) {
  RecipeScratch scratch;
  EXPECT_THAT(error_of([&] { scratch.load("", {"foo"}); }),
              AllOf(HasSubstr("--set foo"), HasSubstr("expected KEY.PATH=VALUE")));
  EXPECT_THAT(error_of([&] { scratch.load("", {"=5"}); }), HasSubstr("expected KEY.PATH=VALUE"));
  EXPECT_THAT(error_of([&] { scratch.load("", {"train..steps=5"}); }),
              HasSubstr("not a dotted path"));
  EXPECT_THAT(error_of([&] { scratch.load("", {"data.general=[wn,"}); }),
              HasSubstr("not a valid YAML flow list"));
  // Going through a list or a value: the file has the key, or the strict read catches it.
  const std::string yaml = "data:\n  general: [wn]\ntrain:\n  steps: 5\n";
  EXPECT_THAT(error_of([&] { scratch.load(yaml, {"data.general.x=1"}); }),
              HasSubstr("'data.general' is a list: set it whole"));
  EXPECT_THAT(error_of([&] { scratch.load(yaml, {"train.steps.x=1"}); }),
              HasSubstr("'train.steps' is a value"));
  EXPECT_THAT(error_of([&] { scratch.load("", {"data.general.x=1"}); }),
              HasSubstr("'data.general' must be a list"));
  EXPECT_THAT(error_of([&] { scratch.load("", {"train.steps.x=1"}); }),
              HasSubstr("'train.steps' must be an integer"));
}

TEST(RecipeSet, UnknownKeyOrWrongTypeNamesTheSet) {
  RecipeScratch scratch;
  EXPECT_THAT(error_of([&] { scratch.load("", {"train.stepz=5"}); }),
              AllOf(HasSubstr("--set train.stepz=5"), HasSubstr("unknown key 'train.stepz'")));
  EXPECT_THAT(error_of([&] { scratch.load("", {"trian.steps=5"}); }),
              HasSubstr("unknown key 'trian'"));
  EXPECT_THAT(error_of([&] { scratch.load("", {"train.steps=abc"}); }),
              AllOf(HasSubstr("--set train.steps=abc"), HasSubstr("must be an integer")));
}

}  // namespace
}  // namespace kvtune::test

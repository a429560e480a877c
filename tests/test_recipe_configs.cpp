// Recipes, continued: the resolved round trip, index and model configs by name, corpora.
#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "data/corpus.h"
#include "data/dictd_reader.h"
#include "index/index_config_yaml.h"
#include "recipe_test_util.h"
#include "train/recipe_io.h"

namespace kvtune::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

void expect_index_eq(const IndexConfig& a, const IndexConfig& b) {
  EXPECT_EQ(a.factory, b.factory);
  EXPECT_EQ(a.nprobe, b.nprobe);
  EXPECT_EQ(a.ef_search, b.ef_search);
  EXPECT_EQ(a.rebuild_interval, b.rebuild_interval);
  EXPECT_EQ(a.train_size, b.train_size);
  EXPECT_EQ(a.seed, b.seed);
}

// Every field of the Recipe; the model through its YAML (ModelConfig has no operator==).
void expect_recipe_eq(const Recipe& a, const Recipe& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.base, b.base);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(YAML::Dump(model_config_yaml(a.model_config)),
            YAML::Dump(model_config_yaml(b.model_config)));
  EXPECT_EQ(a.backward, b.backward);
  EXPECT_EQ(a.attention.estimator, b.attention.estimator);
  EXPECT_EQ(a.attention.k, b.attention.k);
  EXPECT_EQ(a.attention.samples, b.attention.samples);
  EXPECT_EQ(a.attention.groups, b.attention.groups);
  EXPECT_EQ(a.attention.tail_samples, b.attention.tail_samples);
  EXPECT_EQ(a.attention.backward_samples, b.attention.backward_samples);
  EXPECT_EQ(a.data.general, b.data.general);
  EXPECT_EQ(a.data.domain, b.data.domain);
  EXPECT_EQ(a.data.held_out_fraction, b.data.held_out_fraction);
  EXPECT_EQ(a.data.split_salt, b.data.split_salt);
  EXPECT_EQ(a.data.seq_len, b.data.seq_len);
  EXPECT_EQ(a.data.max_entries, b.data.max_entries);
  EXPECT_EQ(a.domain_bank.size, b.domain_bank.size);
  EXPECT_EQ(a.domain_bank.key_dim, b.domain_bank.key_dim);
  EXPECT_EQ(a.domain_bank.value_dim, b.domain_bank.value_dim);
  EXPECT_EQ(a.domain_bank.key_init, b.domain_bank.key_init);
  EXPECT_EQ(a.domain_bank.value_init, b.domain_bank.value_init);
  expect_index_eq(a.domain_bank.index, b.domain_bank.index);
  EXPECT_EQ(a.lora.rank, b.lora.rank);
  EXPECT_EQ(a.lora.alpha, b.lora.alpha);
  EXPECT_EQ(a.optim.lr, b.optim.lr);
  EXPECT_EQ(a.optim.bank_lr, b.optim.bank_lr);
  EXPECT_EQ(a.optim.weight_decay, b.optim.weight_decay);
  EXPECT_EQ(a.optim.grad_clip, b.optim.grad_clip);
  EXPECT_EQ(a.optim.warmup_steps, b.optim.warmup_steps);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.batch_size, b.train.batch_size);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.checkpoint_every, b.train.checkpoint_every);
  EXPECT_EQ(a.train.eval_every, b.train.eval_every);
  EXPECT_EQ(a.train.log_every, b.train.log_every);
  EXPECT_EQ(a.train.eval_batches, b.train.eval_batches);
  EXPECT_EQ(a.train.threads, b.train.threads);
  EXPECT_EQ(a.train.device, b.train.device);
}

// Every key away from its default, values that print awkwardly (0.1, 1/3, 2^64-1).
const char* kEveryKey = R"(name: every-key
mode: pretrain
method: lora
base: some/run
model: tiny
model_overrides:
  name: tiny-wide
  max_seq_len: 256
  memory: {key_dim: 48, value_dim: 40, estimator: dense, k: 8}
backward: dense
attention: {estimator: gumbel, k: 7, samples: 33, groups: 3, tail_samples: 5, backward_samples: 9}
data:
  general: [jargon, foldoc]
  domain: elements-facts
  held_out_fraction: 0.3
  split_salt: 18446744073709551615
  seq_len: 77
  max_entries: 123
domain_bank:
  size: 333
  key_dim: 48
  value_dim: 40
  key_init: sample
  value_init: random
  index: {factory: "IVF16,Flat", nprobe: 3, ef_search: 5, rebuild_interval: 7, train_size: 11, seed: 13}
lora:
  rank: 3
  alpha: 0.3333333333333333
optim:
  lr: 1.0e-7
  bank_lr: 0.25
  weight_decay: 0.01
  grad_clip: 2.5
  warmup_steps: 3
train:
  steps: 9
  batch_size: 5
  seed: 77
  checkpoint_every: 4
  eval_every: 3
  log_every: 2
  eval_batches: 6
  threads: 1
  device: cuda
)";

TEST(RecipeRoundTrip, ResolvedFileLoadsBackEqual) {
  RecipeScratch scratch;
  const std::string model_path = configs_dir() + "/models/tiny.yaml";
  const Recipe r = scratch.load(kEveryKey, {"train.steps=10", "model=" + model_path});
  // The file was read: spot checks that the values are not the defaults.
  EXPECT_EQ(r.train.steps, 10);
  EXPECT_EQ(r.model, model_path);
  EXPECT_EQ(r.model_config.name, "tiny-wide");
  EXPECT_EQ(r.model_config.memory.attention.estimator, "dense");
  EXPECT_EQ(r.data.split_salt, 18446744073709551615ull);
  EXPECT_EQ(r.domain_bank.index.factory, "IVF16,Flat");
  EXPECT_EQ(r.model_config.memory.key_dim, 48);
  EXPECT_EQ(r.model_config.memory.attention.k, 8);
  EXPECT_EQ(r.lora.alpha, 1.0 / 3.0);

  const std::string saved = scratch.file("run/config.yaml");
  fs::create_directories(scratch.file("run"));
  save_resolved_recipe(r, saved);
  const Recipe back = load_recipe(saved, {}, configs_dir());
  expect_recipe_eq(r, back);
  // No temporary left beside it; saving again over it works.
  EXPECT_EQ(std::distance(fs::directory_iterator(scratch.file("run")), fs::directory_iterator()),
            1);
  save_resolved_recipe(back, saved);
  expect_recipe_eq(r, load_recipe(saved, {}, configs_dir()));

  // The defaults round-trip too, and numbers are written short.
  const Recipe d = scratch.load("", {}, "defaults.yaml");
  save_resolved_recipe(d, saved);
  expect_recipe_eq(d, load_recipe(saved, {}, configs_dir()));
  EXPECT_EQ(recipe_to_yaml(d)["data"]["held_out_fraction"].Scalar(), "0.1");
}

TEST(RecipeRoundTrip, ComparisonCatchesADifference) {
  RecipeScratch scratch;
  const Recipe a = scratch.load(kEveryKey);
  Recipe b = a;
  b.domain_bank.index.seed += 1;
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    expect_recipe_eq(a, b);
  }
  EXPECT_EQ(failures.size(), 1);
}

TEST(RecipeIndex, ShippedConfigsLoad) {
  const std::string dir = configs_dir() + "/index/";
  const IndexConfig flat = load_index_config(dir + "flat.yaml");
  EXPECT_TRUE(flat.is_flat());
  const IndexConfig ivf = load_index_config(dir + "ivf.yaml");
  EXPECT_EQ(ivf.factory, "IVF256,Flat");
  EXPECT_EQ(ivf.nprobe, 96);
  const IndexConfig hnsw = load_index_config(dir + "hnsw.yaml");
  EXPECT_EQ(hnsw.factory, "HNSW32");
  EXPECT_EQ(hnsw.ef_search, 160);
  const IndexConfig ivfpq = load_index_config(dir + "ivfpq.yaml");
  EXPECT_EQ(ivfpq.factory, "IVF1024,PQ16");
  EXPECT_EQ(ivfpq.nprobe, 32);
  EXPECT_EQ(index_config_names(configs_dir()),
            (std::vector<std::string>{"flat", "hnsw", "ivf", "ivf-large", "ivfpq"}));
  for (const auto& name : index_config_names(configs_dir())) {
    EXPECT_NO_THROW(validate(load_index_config(dir + name + ".yaml"), name, "index"));
  }
}

TEST(RecipeIndex, ByNameByPathOrInline) {
  RecipeScratch scratch;
  EXPECT_EQ(scratch.load("domain_bank: {index: hnsw}\n").domain_bank.index.factory, "HNSW32");
  const std::string own = scratch.write_recipe("mine.yaml", "factory: \"IVF8,Flat\"\nnprobe: 2\n");
  const IndexConfig by_path = scratch.load("domain_bank: {index: " + own + "}\n").domain_bank.index;
  EXPECT_EQ(by_path.factory, "IVF8,Flat");
  EXPECT_EQ(by_path.nprobe, 2);
  EXPECT_EQ(by_path.rebuild_interval, IndexConfig{}.rebuild_interval);
  const IndexConfig inline_map =
      scratch.load("domain_bank:\n  index:\n    factory: HNSW16\n    ef_search: 9\n")
          .domain_bank.index;
  EXPECT_EQ(inline_map.factory, "HNSW16");
  EXPECT_EQ(inline_map.ef_search, 9);
}

TEST(RecipeIndex, Errors) {
  RecipeScratch scratch;
  EXPECT_THAT(error_of([&] { scratch.load("domain_bank: {index: ivff}\n"); }),
              AllOf(HasSubstr("no index config named 'ivff'"),
                    HasSubstr("flat, hnsw, ivf, ivf-large, ivfpq")));
  EXPECT_THAT(error_of([&] { scratch.load("domain_bank: {index: [a]}\n"); }),
              HasSubstr("'domain_bank.index' must be an index config name"));
  const std::string bad = scratch.write_recipe("bad.yaml", "factory: Flat\nef: 3\n");
  EXPECT_THAT(error_of([&] { load_index_config(bad); }),
              AllOf(HasSubstr(bad), HasSubstr("unknown key 'ef'"), HasSubstr("ef_search")));
  const std::string typed = scratch.write_recipe("typed.yaml", "nprobe: many\n");
  EXPECT_THAT(error_of([&] { load_index_config(typed); }),
              AllOf(HasSubstr(typed), HasSubstr("'nprobe' must be an integer")));
  EXPECT_THAT(error_of([&] { validate(IndexConfig{""}, "x.yaml", "domain_bank.index"); }),
              HasSubstr("'domain_bank.index.factory' is empty"));
}

TEST(RecipeModel, NamedFileWithOverridesMerged) {
  const ModelConfig tiny = resolve_model_config("tiny", YAML::Node(), configs_dir(), "r.yaml");
  EXPECT_EQ(tiny.name, "tiny");
  EXPECT_EQ(tiny.max_seq_len, 128);
  const ModelConfig wider = resolve_model_config(
      "tiny", YAML::Load("{max_seq_len: 64, memory: {value_dim: 16}}"), configs_dir(), "r.yaml");
  EXPECT_EQ(wider.max_seq_len, 64);
  EXPECT_EQ(wider.memory.value_dim, 16);
  EXPECT_EQ(wider.memory.key_dim, 32);  // a merged map keeps its other keys
  EXPECT_EQ(wider.memory.attention.k, 32);
  EXPECT_THAT(
      error_of([&] { resolve_model_config("huge", YAML::Node(), configs_dir(), "r.yaml"); }),
      AllOf(HasSubstr("r.yaml"), HasSubstr("no model config named 'huge'"),
            HasSubstr("available: base, small, tiny")));
  EXPECT_THAT(error_of([&] {
                resolve_model_config("tiny", YAML::Load("{max_seq_len: long}"), configs_dir(),
                                     "r.yaml");
              }),
              AllOf(HasSubstr("model_overrides from r.yaml"), HasSubstr("'max_seq_len'")));
}

TEST(RecipeCorpus, TextJsonlAndElements) {
  RecipeScratch scratch;
  const auto txt = load_corpus(scratch.file("domain.txt"), 0);
  ASSERT_EQ(txt.size(), 2u);
  EXPECT_EQ(txt[0].text, "Domain text.");
  const std::string jsonl =
      write_text(scratch.file("c.jsonl"), "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
  EXPECT_EQ(load_corpus(jsonl, 0).size(), 2u);
  EXPECT_EQ(load_corpus(jsonl, 1).size(), 1u);
  EXPECT_THAT(error_of([&] { load_corpus(scratch.file("c.csv"), 0); }),
              HasSubstr("is not a known corpus"));
  EXPECT_THAT(error_of([&] { load_corpus(jsonl, -1); }), HasSubstr("must be >= 0"));
  KVTUNE_REQUIRE_DICTD("elements");
  const auto facts = load_corpus(kElementsFacts, 0);
  // docs/data.md: 322 facts (116 symbols, 116 numbers, 90 plain weights) x 3 trained templates
  // x 2 directions = 1932 statements, and the 303 answered questions of the half of the
  // elements that teaches the answer format.
  EXPECT_EQ(facts.size(), 1932u + 303u);
  EXPECT_EQ(load_corpus(kElementsFacts, 0, 1).size(), 644u + 303u);
  EXPECT_EQ(facts[0].headword, "Hydrogen");
  EXPECT_THAT(facts[0].text, HasSubstr("Hydrogen"));
}

TEST(RecipeCorpus, MaxEntriesIsAStableSampleInOrder) {
  KVTUNE_REQUIRE_DICTD("jargon");
  const auto all = load_corpus("jargon", 0);
  const auto some = load_corpus("jargon", 200);
  ASSERT_EQ(some.size(), 200u);
  EXPECT_EQ(all.size(), read_dictd_named("jargon").size());
  // In the original order, a subset of the whole, spread over it (not the first 200).
  size_t pos = 0;
  for (const auto& e : some) {
    while (pos < all.size() && all[pos].headword != e.headword) ++pos;
    ASSERT_LT(pos, all.size()) << e.headword << " is missing or out of order";
  }
  EXPECT_GT(pos, all.size() / 2);
  std::set<char> initials;
  for (const auto& e : some) initials.insert(static_cast<char>(std::tolower(e.headword[0])));
  EXPECT_GE(initials.size(), 10u);
  const auto again = load_corpus("jargon", 200);
  for (size_t i = 0; i < some.size(); ++i) EXPECT_EQ(some[i].headword, again[i].headword);
}

}  // namespace
}  // namespace kvtune::test

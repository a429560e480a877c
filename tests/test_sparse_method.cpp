// Method sparse (sparse memory fine-tuning): TF-IDF ranking against hand-computed cases, the
// background counts file, a sparse step that changes only the top-t slots of its batch, and
// patches: applied to their base they give the trained bank, on another base they are refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "attention/lazy_gumbel.h"
#include "bank/bank_io.h"
#include "bank/bank_patch.h"
#include "cli_test_util.h"
#include "common/check.h"
#include "data/text_data.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "recipe_test_util.h"
#include "test_util.h"
#include "train/background_counts.h"
#include "train/run_model.h"
#include "train/tfidf.h"
#include "train/train_loop.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;

// score_s = (c_s / sum c) * log((|B| + 1) / (df_s + 1)), worked out by hand:
//   c = [3, 0, 1, 6], df = [0, 5, 2, 10], |B| = 10, sum c = 10
//   s0 = 0.3 * ln(11)   = 0.719368...
//   s1 = 0 (not retrieved)
//   s2 = 0.1 * ln(11/3) = 0.129928...
//   s3 = 0.6 * ln(1)    = 0
TEST(TfIdf, ScoresAndTopTMatchAHandComputedCase) {
  const auto counts = torch::tensor({3, 0, 1, 6}, torch::kInt64);
  const auto df = torch::tensor({0, 5, 2, 10}, torch::kInt64);
  const auto s = tfidf_scores(counts, df, 10);
  ASSERT_EQ(s.scalar_type(), torch::kFloat64);
  EXPECT_NEAR(s[0].item<double>(), 0.3 * std::log(11.0), 1e-15);
  EXPECT_EQ(s[1].item<double>(), 0.0);
  EXPECT_NEAR(s[2].item<double>(), 0.1 * std::log(11.0 / 3.0), 1e-15);
  EXPECT_NEAR(s[3].item<double>(), 0.0, 1e-15);
  auto rows = [](const torch::Tensor& t) {
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  };
  EXPECT_THAT(rows(top_t_slots(counts, df, 10, 1)), ::testing::ElementsAre(0));
  EXPECT_THAT(rows(top_t_slots(counts, df, 10, 2)), ::testing::ElementsAre(0, 2));
  // The most retrieved slot ranks last: every background batch retrieved it (IDF 0). A slot
  // the batch did not retrieve is never picked, whatever t.
  EXPECT_THAT(rows(top_t_slots(counts, df, 10, 3)), ::testing::ElementsAre(0, 2, 3));
  EXPECT_THAT(rows(top_t_slots(counts, df, 10, 100)), ::testing::ElementsAre(0, 2, 3));
  // Term frequency alone would rank slot 3 first; IDF is what puts it last.
  EXPECT_THAT(rows(top_t_slots(counts, torch::zeros({4}, torch::kInt64), 10, 1)),
              ::testing::ElementsAre(3));
  // Equal scores: the smaller slot first.
  const auto tie = torch::tensor({2, 2, 2}, torch::kInt64);
  EXPECT_THAT(rows(top_t_slots(tie, torch::zeros({3}, torch::kInt64), 4, 2)),
              ::testing::ElementsAre(0, 1));
  EXPECT_EQ(
      top_t_slots(torch::zeros({3}, torch::kInt64), torch::zeros({3}, torch::kInt64), 4, 2).numel(),
      0);
}

// The trainer tests' micro recipe, as method sparse with background counts at pretraining.
Recipe micro_recipe(const std::string& mode) {
  Recipe r = test::micro_recipe(mode);
  r.train.steps = 4;
  r.train.background_batches = 5;
  r.optim.warmup_steps = 1;
  r.method = "sparse";
  r.sparse.top_t = 12;
  r.optim.bank_lr = 1.0;
  return r;
}

class SparseMethodTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    pretrain(micro_recipe("pretrain"), base(), /*resume=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string base() { return dir_->file("base"); }
  static test::TempDir* dir_;
};
test::TempDir* SparseMethodTest::dir_ = nullptr;

TEST_F(SparseMethodTest, BackgroundCountsSurviveASaveAndAReload) {
  const auto loaded = load_model(base() + "/model");
  const auto path = base() + "/model/" + kBackgroundFile;
  const auto counts = read_background(path, loaded.model);
  EXPECT_EQ(counts.sequences, 5 * 4);  // df counts sequences
  ASSERT_EQ(counts.df.size(), 1u);
  EXPECT_EQ(counts.df[0].size(0), test::micro_config().memory.base_bank_size);
  EXPECT_LE(counts.df[0].max().item<int64_t>(), 20);
  EXPECT_GT(counts.df[0].sum().item<int64_t>(), 0);
  // count >= df (a batch that retrieved a slot retrieved it at least once); every retrieval of
  // every batch is counted: 5 batches x 4 sequences x 32 positions x 2 heads x k = 8.
  EXPECT_TRUE((counts.count[0] >= counts.df[0]).all().item<bool>());
  EXPECT_EQ(counts.count[0].sum().item<int64_t>(), 5 * 4 * 32 * 2 * 8);
  // df per sequence, against a reference that runs each sequence alone (batches of one).
  {
    auto model = load_model(base() + "/model").model;
    const auto split = load_split({"wn"}, micro_recipe("pretrain").data, *loaded.tokenizer);
    const auto batched = count_background(model, *split.train, 2, 4, 9);
    EXPECT_EQ(batched.sequences, 8);
    const int64_t n = batched.df[0].size(0);
    auto df = torch::zeros({n}, torch::kInt64), total = torch::zeros({n}, torch::kInt64);
    model->eval();
    torch::NoGradGuard no_grad;
    for (int64_t b = 0; b < 2; ++b) {
      const auto batch = split.train->train_batch(4, 9, b);
      for (int64_t row = 0; row < 4; ++row) {
        model->forward(batch.narrow(0, row, 1).narrow(1, 0, batch.size(1) - 1));
        const auto c = torch::bincount(model->memory_layers()[0]->last_ids().reshape({-1}), {}, n);
        df += (c > 0).to(torch::kInt64);
        total += c;
      }
    }
    EXPECT_TRUE(torch::equal(batched.df[0], df));
    EXPECT_TRUE(torch::equal(batched.count[0], total));
    EXPECT_GT(df.max().item<int64_t>(), 1);  // some slot is retrieved in several sequences
  }
  const auto copy = dir_->file("bg-copy.h5");
  write_background(copy, counts);
  const auto again = read_background(copy, loaded.model);
  EXPECT_EQ(again.sequences, counts.sequences);
  EXPECT_TRUE(torch::equal(again.df[0], counts.df[0]));
  EXPECT_TRUE(torch::equal(again.count[0], counts.count[0]));
  // Counts of another model (another bank size) are refused, naming the file and the fix.
  auto other = test::micro_config();
  other.memory.base_bank_size = 128;
  const auto model = test::make_model(other, 3);
  const std::string msg = test::error_of([&] { read_background(copy, model); });
  EXPECT_THAT(msg, ::testing::HasSubstr("df_0"));
  EXPECT_THAT(msg, ::testing::HasSubstr("kvtune background"));
}

// One sparse step changes only slots of T (the top-t of its batch by TF-IDF, recomputed here
// from the base model's own retrievals on the same batch) and leaves every other slot, every key
// and every model parameter byte for byte.
TEST_F(SparseMethodTest, ASparseStepChangesOnlyTheTopTSlots) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.train.steps = 1;
  const auto out = dir_->file("ft-sparse-1");
  finetune(r, out, false);
  auto before = load_model(base() + "/model");
  const auto after = load_run_model(out + "/model");
  ASSERT_TRUE(fs::exists(out + "/model/patch_0.h5"));

  // T, independently: the base model's retrievals on batch 0 of the domain's training side.
  const auto split = load_split({r.data.domain}, r.data, *before.tokenizer);
  const auto batch = split.train->train_batch(r.train.batch_size, r.train.seed, 0);
  auto layer = before.model->memory_layers()[0];
  {
    torch::NoGradGuard no_grad;
    set_attention_seed(before.model, stream_seed(r.train.seed, 0));
    before.model->forward(batch.narrow(1, 0, batch.size(1) - 1));
  }
  const int64_t n = layer->banks()[0]->size();
  const auto ids = layer->last_ids().reshape({-1});
  const auto counts = torch::bincount(ids.masked_select(ids >= 0), {}, n);
  const auto bg = read_background(base() + "/model/" + kBackgroundFile, before.model);
  const auto top = top_t_slots(counts, bg.df[0], bg.sequences, r.sparse.top_t);
  ASSERT_EQ(top.numel(), r.sparse.top_t);
  auto in_top = torch::zeros({n}, torch::kBool);
  in_top.index_fill_(0, top, true);

  const auto& vb = layer->banks()[0]->bank().values;
  const auto& va = after.model->memory_layers()[0]->banks()[0]->bank().values;
  const auto changed = (vb != va).any(1);
  EXPECT_GT(changed.sum().item<int64_t>(), 0);
  EXPECT_LE(changed.sum().item<int64_t>(), r.sparse.top_t);
  EXPECT_FALSE((changed & ~in_top).any().item<bool>()) << "a slot outside T changed";
  const auto untouched = (~changed).nonzero().reshape({-1});
  EXPECT_TRUE(torch::equal(vb.index_select(0, untouched), va.index_select(0, untouched)));
  EXPECT_TRUE(torch::equal(layer->banks()[0]->bank().keys,
                           after.model->memory_layers()[0]->banks()[0]->bank().keys));
  auto params_before = before.model->named_parameters();
  for (const auto& p : after.model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), params_before[p.key()])) << p.key();
  auto buffers_before = before.model->named_buffers();
  for (const auto& b : after.model->named_buffers())
    EXPECT_TRUE(torch::equal(b.value(), buffers_before[b.key()])) << b.key();
  // The run's folder holds the base model unchanged: same fingerprint, base bank file equal.
  EXPECT_EQ(model_fingerprint(load_model(out + "/model").model), model_fingerprint(before.model));
  EXPECT_TRUE(torch::equal(read_bank(out + "/model/bank_0.h5").values,
                           read_bank(base() + "/model/bank_0.h5").values));
}

// The patch a sparse run writes, applied to its base, equals the bank the run trained (the
// checkpoint's rows at the last step); on another base it is refused and nothing changes.
TEST_F(SparseMethodTest, APatchAppliedToItsBaseEqualsTheTrainedBank) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.train.checkpoint_every = r.train.steps;
  r.sparse.optimizer = "adam";
  r.optim.bank_lr = 1e-2;
  const auto out = dir_->file("ft-sparse");
  const auto o = finetune(r, out, false);
  EXPECT_TRUE(o.report.contains("sparse"));
  torch::serialize::InputArchive archive;
  archive.load_from(out + "/checkpoint.pt");
  torch::Tensor trained;
  archive.read("bank0/values", trained);

  const Bank patch = read_bank(out + "/model/patch_0.h5");
  EXPECT_EQ(patch.meta.kind, kBankKindPatch);
  EXPECT_EQ(patch.meta.memory_layer, 0);
  EXPECT_GT(patch.size(), 0);
  auto base_model = load_model(base() + "/model");
  EXPECT_EQ(patch.meta.model_fingerprint, model_fingerprint(base_model.model));
  const auto applied = attach_bank_file(base_model.model, out + "/model/patch_0.h5");
  EXPECT_EQ(base_model.model->memory_layers()[0]->banks().size(), 1u);  // applied, not attached
  EXPECT_TRUE(torch::equal(applied->bank().values, trained));
  EXPECT_EQ(o.report["sparse"]["changed_slots"][0].get<int64_t>(), patch.size());

  // Another base (other keys, so another fingerprint): refused, its bank unchanged.
  auto other = test::make_model(test::micro_config(), 77);
  const auto values = other->memory_layers()[0]->banks()[0]->bank().values.clone();
  const std::string msg =
      test::error_of([&] { attach_bank_file(other, out + "/model/patch_0.h5"); });
  EXPECT_THAT(msg, ::testing::HasSubstr("trained for model"));
  EXPECT_EQ(other->memory_layers()[0]->banks().size(), 1u);
  EXPECT_TRUE(torch::equal(other->memory_layers()[0]->banks()[0]->bank().values, values));
}

// A sparse run stopped after 3 steps and resumed saves the patch of an uninterrupted run: the
// checkpoint keeps which rows changed before the stop (TrainState::method_state). Without it the
// resumed run's patch held only the rows changed after the resume.
TEST_F(SparseMethodTest, AResumedRunSavesThePatchOfAnUninterruptedOne) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.train.checkpoint_every = 2;
  const auto whole = dir_->file("sparse-uninterrupted"), parts = dir_->file("sparse-resumed");
  finetune(r, whole, false);
  set_stop_after_for_testing(3);
  finetune(r, parts, false);
  set_stop_after_for_testing(0);
  ASSERT_FALSE(std::filesystem::exists(parts + "/model"));
  finetune(r, parts, /*resume=*/true);
  const Bank a = read_bank(whole + "/model/patch_0.h5");
  const Bank b = read_bank(parts + "/model/patch_0.h5");
  ASSERT_GT(a.size(), r.sparse.top_t);  // more rows than one step changes
  EXPECT_TRUE(torch::equal(a.slot_ids, b.slot_ids));
  EXPECT_TRUE(torch::equal(a.values, b.values));
}

TEST_F(SparseMethodTest, AFinetuneWithoutBackgroundCountsIsRefusedBeforeAnyWork) {
  const auto bare = dir_->file("bare-base");
  fs::create_directories(bare);
  fs::copy(base() + "/model", bare + "/model");
  fs::remove(bare + "/model/" + std::string(kBackgroundFile));
  auto r = micro_recipe("finetune");
  r.base = bare;
  const std::string msg = test::error_of([&] { finetune(r, dir_->file("ft-bare"), false); });
  EXPECT_THAT(msg, ::testing::HasSubstr("background.h5"));
  EXPECT_THAT(msg, ::testing::HasSubstr("kvtune background --model"));
  EXPECT_FALSE(fs::exists(dir_->file("ft-bare/report.json")));
}

// The CLI over patches: export, eval --banks on the base (the same metrics as the run's own
// model folder), merge, and the errors.
TEST_F(SparseMethodTest, PatchesThroughTheCli) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.optim.bank_lr = 1e-1;
  const auto run_a = dir_->file("cli-a"), run_b = dir_->file("cli-b");
  finetune(r, run_a, false);
  r.sparse.top_t = 5;
  r.train.seed = 2;
  finetune(r, run_b, false);
  const auto pa = dir_->file("pa.h5"), pb = dir_->file("pb.h5");
  auto out = test::kvtune("bank export --model " + run_a + "/model --which patch --out " + pa);
  ASSERT_EQ(out.code, 0) << out.output;
  EXPECT_THAT(out.output, ::testing::HasSubstr("changed slots of the base bank"));
  ASSERT_EQ(test::kvtune("bank export --model " + run_b + "/model --which patch --out " + pb).code,
            0);
  const std::string flags =
      " --data foldoc --batches 2 --seq-len 32 --max-entries 300 "
      "--held-out-fraction 0.1 --split-salt 0";
  out = test::kvtune("eval --model " + base() + "/model --banks " + pa + flags + " --json " +
                     dir_->file("e1.json"));
  ASSERT_EQ(out.code, 0) << out.output;
  out =
      test::kvtune("eval --model " + run_a + "/model" + flags + " --json " + dir_->file("e2.json"));
  ASSERT_EQ(out.code, 0) << out.output;
  std::ifstream f1(dir_->file("e1.json")), f2(dir_->file("e2.json"));
  const auto e1 = nlohmann::json::parse(f1), e2 = nlohmann::json::parse(f2);
  ASSERT_TRUE(e1["sets"]["foldoc"]["loss"].is_number()) << e1.dump();
  EXPECT_EQ(e1["sets"]["foldoc"]["loss"], e2["sets"]["foldoc"]["loss"]) << e1.dump() << e2.dump();
  // ... and the patch changes what the base alone gives.
  out = test::kvtune("eval --model " + base() + "/model" + flags + " --json " +
                     dir_->file("e0.json"));
  ASSERT_EQ(out.code, 0) << out.output;
  std::ifstream f0(dir_->file("e0.json"));
  EXPECT_NE(nlohmann::json::parse(f0)["sets"]["foldoc"]["loss"], e1["sets"]["foldoc"]["loss"]);
  out = test::kvtune("bank merge " + pa + " " + pb + " --out " + dir_->file("pm.h5"));
  ASSERT_EQ(out.code, 0) << out.output;
  EXPECT_THAT(out.output, ::testing::HasSubstr("merged 2 patches"));
  out = test::kvtune("bank merge " + pa + " " + base() + "/model/bank_0.h5 --out " +
                     dir_->file("mix.h5"));
  EXPECT_NE(out.code, 0);
  EXPECT_THAT(out.output, ::testing::HasSubstr("merge patches with patches"));
  EXPECT_FALSE(fs::exists(dir_->file("mix.h5")));
  out = test::kvtune("bank export --model " + base() + "/model --which patch --out " +
                     dir_->file("none.h5"));
  EXPECT_NE(out.code, 0);
  EXPECT_THAT(out.output,
              ::testing::HasSubstr("not the model of a run fine-tuned with method sparse"));
  out = test::kvtune("background --model " + base() + "/model --batches 0");
  EXPECT_NE(out.code, 0);
  out = test::kvtune("compare " + test::source_dir() + "/recipes/foldoc.yaml --out " +
                     dir_->file("cmp") + " --sweep sparse:sparse.top_t=100,,5");
  EXPECT_NE(out.code, 0);
  EXPECT_THAT(out.output, ::testing::HasSubstr("empty value"));
  EXPECT_FALSE(fs::exists(dir_->file("cmp")));
}

Bank hand_patch(std::vector<int64_t> ids, std::vector<float> value, const std::string& fp) {
  const int64_t n = static_cast<int64_t>(ids.size());
  Bank b;
  b.keys = torch::zeros({n, 2});
  b.keys.select(1, 0).fill_(1.0f);
  b.values = torch::tensor(value).reshape({n, 1});
  b.slot_ids = torch::tensor(ids, torch::kInt64);
  b.usage = torch::ones({n}, torch::kInt64);
  b.meta.name = "p";
  b.meta.key_dim = 2;
  b.meta.value_dim = 1;
  b.meta.kind = kBankKindPatch;
  b.meta.model_fingerprint = fp;
  b.meta.memory_layer = 0;
  return b;
}

// Merging patches: slots one patch changed keep its row, slots both changed take the mean.
TEST(BankPatch, MergeTakesTheMeanOfSlotsSeveralPatchesChanged) {
  const Bank a = hand_patch({1, 5}, {1.0f, 2.0f}, "f");
  const Bank b = hand_patch({5, 9}, {4.0f, 8.0f}, "f");
  PatchMergeReport rep;
  const Bank m = merge_patches({{"a.h5", a}, {"b.h5", b}}, "m", &rep);
  EXPECT_EQ(rep.slots_out, 3);
  EXPECT_EQ(rep.conflicting_slots, 1);
  EXPECT_EQ(m.meta.kind, kBankKindPatch);
  EXPECT_TRUE(torch::equal(m.slot_ids, torch::tensor({1, 5, 9}, torch::kInt64)));
  EXPECT_TRUE(torch::allclose(m.values.reshape({-1}), torch::tensor({1.0f, 3.0f, 8.0f})));
  EXPECT_EQ(m.usage[1].item<int64_t>(), 2);
  const std::string msg = test::error_of([&] {
    merge_patches({{"a.h5", a}, {"c.h5", hand_patch({1}, {1}, "g")}}, "m", nullptr);
  });
  EXPECT_THAT(msg, ::testing::HasSubstr("same base bank"));
  // Applying to a base that lacks a slot is refused and changes nothing.
  Bank base = hand_patch({1, 5}, {0.0f, 0.0f}, "f");
  base.meta.kind.clear();
  const std::string missing = test::error_of([&] { apply_patch_rows(base, m, "m.h5"); });
  EXPECT_THAT(missing, ::testing::HasSubstr("slot 9"));
  EXPECT_EQ(base.values.abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace kvtune

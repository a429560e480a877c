// Issue 18, training side: a run's output folder (train/run_folder.h), the weights' integrity, a
// diverged run, a full disk during a checkpoint, sizes and caps in recipes, and the torch
// generator state in checkpoints (docs/reliability.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "bank_test_util.h"
#include "cli_test_util.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "eval/evaluate.h"
#include "model/model_io.h"
#include "model/module_state.h"
#include "test_util.h"
#include "train/recipe_io.h"
#include "train/run_folder.h"
#include "train/train_loop.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::micro_recipe;
using test::read_bytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Every regular file under `dir` with its bytes.
std::map<std::string, std::string> tree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename() != "run.lock")
      out[fs::relative(e.path(), dir).string()] = read_bytes(e.path().string());
  }
  return out;
}

class RunFolderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    pretrain(micro_recipe("pretrain"), base(), /*resume=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string base() { return dir_->file("base"); }
  static Recipe fine() {
    auto r = micro_recipe("finetune");
    r.base = base();
    return r;
  }
  static test::TempDir* dir_;
};
test::TempDir* RunFolderTest::dir_ = nullptr;

// Case 8: `finetune --out` naming its own base folder (or a folder in it), or a finished run,
// without --resume.
TEST_F(RunFolderTest, OutputOnTheBaseOrOnAFinishedRunIsRefused) {
  const auto before = tree(base());
  for (const std::string& out : {base(), base() + "/model", base() + "/", dir_->path().string()}) {
    SCOPED_TRACE(out);
    EXPECT_THAT(error_of([&] { finetune(fine(), out, false); }),
                HasSubstr("is the base model's folder"));
    EXPECT_THAT(error_of([&] { finetune(fine(), out, false, {}, /*overwrite=*/true); }),
                HasSubstr("is the base model's folder"));
  }
  EXPECT_EQ(tree(base()), before) << "the base changed";

  // Pretraining into a finished base without --resume or --overwrite.
  EXPECT_THAT(error_of([&] { pretrain(micro_recipe("pretrain"), base(), false); }),
              AllOf(HasSubstr("already holds a finished run"), HasSubstr("--overwrite")));
  EXPECT_EQ(tree(base()), before) << "the base changed";

  const auto run = dir_->file("ft-once");
  finetune(fine(), run, false);
  const auto first = tree(run);
  EXPECT_THAT(error_of([&] { finetune(fine(), run, false); }),
              AllOf(HasSubstr("already holds a finished run"), HasSubstr("--resume")));
  EXPECT_EQ(tree(run), first);
  // Asked for explicitly, it is replaced: the same recipe gives the same files (the report
  // holds timings, so compare the weights).
  auto r = fine();
  r.method = "full";
  finetune(r, run, false, {}, /*overwrite=*/true);
  EXPECT_FALSE(fs::exists(run + "/model/domain_0.h5")) << "the old run's domain bank is left";
  EXPECT_NE(read_bytes(run + "/model/model.pt"), first.at("model/model.pt"));

  // A folder with other files in it is not a run folder.
  const auto other = dir_->file("not-a-run");
  fs::create_directories(other);
  std::ofstream(other + "/notes.txt") << "mine\n";
  EXPECT_THAT(error_of([&] { finetune(fine(), other, false); }),
              HasSubstr("is not empty and holds no kvtune run"));
  EXPECT_EQ(read_bytes(other + "/notes.txt"), "mine\n");
}

// Case 10: --resume with another lr or seed; allowed keys still may change.
TEST_F(RunFolderTest, ResumeRefusesChangedSettings) {
  auto r = fine();
  r.train.checkpoint_every = 2;
  const auto run = dir_->file("ft-resume");
  set_stop_after_for_testing(3);
  finetune(r, run, false);
  set_stop_after_for_testing(0);
  const std::string recipe = read_bytes(run + "/recipe.yaml");
  const std::string checkpoint = read_bytes(run + "/checkpoint.pt");
  auto lr = r;
  lr.optim.lr *= 2;
  EXPECT_THAT(error_of([&] { finetune(lr, run, true); }),
              AllOf(HasSubstr("--resume: the recipe differs"), HasSubstr("optim.lr: ")));
  auto seed = r;
  seed.train.seed += 1;
  EXPECT_THAT(error_of([&] { finetune(seed, run, true); }), HasSubstr("train.seed: "));
  EXPECT_EQ(read_bytes(run + "/recipe.yaml"), recipe) << "recipe.yaml was rewritten";
  EXPECT_EQ(read_bytes(run + "/checkpoint.pt"), checkpoint);
  // Without --resume the unfinished run is not silently restarted either.
  EXPECT_THAT(error_of([&] { finetune(r, run, false); }),
              HasSubstr("already holds an unfinished run"));

  auto cadence = r;
  cadence.train.log_every = 1;
  cadence.train.checkpoint_every = 3;
  const auto o = finetune(cadence, run, true);
  EXPECT_EQ(o.train.first_step, 3);
  EXPECT_EQ(o.train.steps, 6);
  EXPECT_EQ(resume_changeable_keys().size(), 4u);
}

// Two runs never write one folder at once.
TEST_F(RunFolderTest, ASecondWriterOfARunFolderFailsClearly) {
  const auto run = dir_->file("ft-locked");
  fs::create_directories(run);
  FileLock held(run + "/run");
  ::setenv("KVTUNE_LOCK_TIMEOUT", "0.2", 1);
  const auto message = error_of([&] { finetune(fine(), run, false); });
  ::unsetenv("KVTUNE_LOCK_TIMEOUT");
  EXPECT_THAT(message, AllOf(HasSubstr("is being written by"), HasSubstr("run.lock")));
  EXPECT_FALSE(fs::exists(run + "/recipe.yaml"));
}

// Case 9: damaged weights are refused; weights that are not finite are refused too, with or
// without checksums.
TEST_F(RunFolderTest, DamagedOrNonFiniteWeightsAreRefused) {
  const auto copy = dir_->file("damaged");
  fs::copy(base(), copy, fs::copy_options::recursive);
  const std::string model = copy + "/model/model.pt";
  ASSERT_TRUE(fs::exists(copy + "/model/checksums.json"));
  std::string bytes = read_bytes(model);
  ASSERT_GT(bytes.size(), 8192u);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < 4096; ++i) bytes[bytes.size() / 2 + i] = static_cast<char>(rng());
  std::ofstream(model, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THAT(error_of([&] { load_model(copy + "/model"); }),
              AllOf(HasSubstr("model.pt does not match its checksum"), HasSubstr("crc32")));
  auto r = fine();
  r.base = copy;
  EXPECT_THAT(error_of([&] { finetune(r, dir_->file("ft-from-damaged"), false); }),
              HasSubstr("does not match its checksum"));
  EXPECT_FALSE(fs::exists(dir_->file("ft-from-damaged") + "/model"));

  // NaN weights in a folder without checksums (written before they were kept).
  auto loaded = load_model(base() + "/model");
  {
    torch::NoGradGuard no_grad;
    loaded.model->parameters().front().view({-1})[3].fill_(NAN);
  }
  save_module_state(*loaded.model, model);
  fs::remove(copy + "/model/checksums.json");
  EXPECT_THAT(error_of([&] { load_model(copy + "/model"); }), HasSubstr("non-finite values"));
}

// Case 9, second half: a run whose loss is not finite stops and saves no model.
TEST_F(RunFolderTest, ADivergedRunStopsAndSavesNoModel) {
  auto r = fine();
  r.method = "full";
  r.optim.lr = 1e30;
  r.optim.warmup_steps = 0;
  r.train.steps = 20;
  const auto run = dir_->file("ft-diverged");
  EXPECT_THAT(error_of([&] { finetune(r, run, false); }),
              AllOf(HasSubstr("training diverged: the loss at step"), HasSubstr("optim.lr")));
  EXPECT_FALSE(fs::exists(run + "/model"));
  EXPECT_FALSE(fs::exists(run + "/report.json"));
}

// Case 3: a full disk while a checkpoint is written ends in a clear error and exit 1 (libtorch's
// writer used to terminate the process), and leaves no temporary file.
TEST_F(RunFolderTest, FullDiskDuringACheckpointIsAnErrorNotAnAbort) {
  auto r = fine();
  r.train.checkpoint_every = 2;
  r.model = "tiny";  // model_overrides (the whole micro config) replace every key of it
  const auto recipe = dir_->file("ckpt.yaml");
  save_resolved_recipe(r, recipe);
  const auto sized = dir_->file("ft-sized");
  ASSERT_EQ(test::kvtune("finetune " + recipe + " --out " + sized).code, 0);
  const auto checkpoint_kib = fs::file_size(sized + "/checkpoint.pt") / 1024;
  ASSERT_GT(checkpoint_kib, 8u);
  // ulimit -f (1024-byte blocks): recipe.yaml and metrics fit, the checkpoint does not. SIGXFSZ
  // ignored, so the write fails with EFBIG as on a full disk.
  const auto run = dir_->file("ft-full");
  const auto res = test::run_command(
      "bash -c \"trap '' XFSZ; ulimit -f " + std::to_string(checkpoint_kib / 2) + "; " +
      std::string(KVTUNE_BINARY_DIR) + "/kvtune finetune " + recipe + " --out " + run + "\"");
  EXPECT_EQ(res.code, 1) << res.output;
  EXPECT_THAT(res.output, AllOf(HasSubstr("cannot write"), HasSubstr("checkpoint.pt.tmp.")));
  EXPECT_THAT(res.output, ::testing::Not(HasSubstr("terminate")));
  for (const auto& e : fs::directory_iterator(run)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }
  EXPECT_FALSE(fs::exists(run + "/checkpoint.pt"));
}

// Temporary files of killed writers are removed by the next write of the same file.
TEST(AtomicOutputCleanup, TempFilesOfDeadWritersAreRemovedByTheNextWrite) {
  test::TempDir dir;
  const auto path = dir.file("x.txt");
  // pid 2^22 + 1 is above Linux's pid_max default limit (4194304): no process has it.
  std::ofstream(path + ".tmp.4194305") << "left by a kill";
  std::ofstream(path + ".tmp.1") << "init is alive: kept";
  std::ofstream(dir.file("y.txt.tmp.4194305")) << "another file's: kept";
  write_file_atomic(path, "new\n");
  EXPECT_FALSE(fs::exists(path + ".tmp.4194305"));
  EXPECT_TRUE(fs::exists(path + ".tmp.1"));
  EXPECT_TRUE(fs::exists(dir.file("y.txt.tmp.4194305")));
  EXPECT_EQ(read_bytes(path), "new\n");
}

// Cases 11 and 12: sizes and counts in recipes and arguments are checked before anything is
// allocated or started, naming the value and the limit.
TEST_F(RunFolderTest, HugeSizesAndCountsAreRefusedUpFront) {
  const auto refused = [](Recipe r) { return error_of([&] { validate_recipe(r, "r.yaml"); }); };
  auto r = fine();
  r.train.batch_size = 100000000;
  EXPECT_THAT(refused(r), AllOf(HasSubstr("key 'train.batch_size' = 100000000"),
                                HasSubstr("of memory: lower train.batch_size")));
  r = fine();
  r.domain_bank.size = 10000000000;
  EXPECT_THAT(refused(r),
              AllOf(HasSubstr("key 'domain_bank.size' = 10000000000"), HasSubstr("GiB of memory")));
  r = fine();
  r.train.threads = 100000;
  EXPECT_THAT(refused(r),
              AllOf(HasSubstr("key 'train.threads' is 100000; the limit is"), HasSubstr("4 per")));
  r = fine();
  r.data.general.assign(1001, "wn");
  EXPECT_THAT(refused(r),
              AllOf(HasSubstr("key 'data.general' lists 1001 corpora; the limit is 1000")));
  r = fine();
  EXPECT_NO_THROW(validate_recipe(r, "r.yaml"));

  // eval --batch-size 1e8
  auto loaded = load_model(base() + "/model");
  EvalRequest request;
  request.sets = {"wn"};
  request.data = fine().data;
  request.batch_size = 100000000;
  EXPECT_THAT(error_of([&] { validate_eval_request(request, loaded.model); }),
              AllOf(HasSubstr("evaluation batch size 100000000"), HasSubstr("--batch-size")));
  const auto cli =
      test::kvtune("eval --model " + base() + "/model --data wn --batch-size " + "100000000");
  EXPECT_EQ(cli.code, 1) << cli.output;
}

// The torch generator state is in checkpoints: with dropout (torch's generator) a resumed
// pretraining reaches the same weights as an uninterrupted one.
TEST_F(RunFolderTest, ResumeWithDropoutReachesTheSameWeights) {
  auto r = micro_recipe("pretrain");
  r.model_config.dropout = 0.2;
  r.train.checkpoint_every = 2;
  const auto whole = dir_->file("pre-whole");
  const auto parts = dir_->file("pre-parts");
  pretrain(r, whole, false);
  set_stop_after_for_testing(3);
  pretrain(r, parts, false);
  set_stop_after_for_testing(0);
  // Other draws between the two halves, as a new process would make.
  torch::manual_seed(12345);
  pretrain(r, parts, true);
  const auto a = load_model(whole + "/model");
  const auto b = load_model(parts + "/model");
  auto pb = b.model->named_parameters();
  for (const auto& p : a.model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

}  // namespace
}  // namespace kvtune

// Several processes on loopback (docs/distributed.md): launch settings, collectives, sharded
// banks, data-parallel fine-tuning against one process, resume, and faults (a killed rank, bad
// launch variables, an unreachable master, a port in use). Every multi-process case starts real
// processes: the kvtune program (--nproc, or the launch variables) or kvtune_dist_worker.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "attention/sharded_attention.h"
#include "bank/bank_io.h"
#include "cli_test_util.h"
#include "common/check.h"
#include "common/communicator.h"
#include "common/launch_settings.h"
#include "common/local_launcher.h"
#include "common/threads.h"
#include "sanitizer_test_util.h"
#include "test_util.h"
#include "train/data_parallel.h"
#include "train/recipe_io.h"
#include "train/run_model.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Launch settings and shares: no processes.

LaunchSettings from(const std::map<std::string, std::string>& vars) {
  return launch_settings_from_env([&vars](const char* n) -> const char* {
    const auto it = vars.find(n);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    from(vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LaunchSettings, NoVariablesIsOneProcess) {
  const auto s = from({});
  EXPECT_EQ(s.world_size, 1);
  EXPECT_EQ(s.rank, 0);
  EXPECT_EQ(s.local_world_size, 1);
  EXPECT_FALSE(s.distributed());
}

TEST(LaunchSettings, TorchrunVariablesAreRead) {
  const auto s = from({{"WORLD_SIZE", "4"},
                       {"RANK", "3"},
                       {"LOCAL_RANK", "1"},
                       {"LOCAL_WORLD_SIZE", "2"},
                       {"MASTER_ADDR", "node7"},
                       {"MASTER_PORT", "29500"}});
  EXPECT_EQ(s.world_size, 4);
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.local_rank, 1);
  EXPECT_EQ(s.local_world_size, 2);
  EXPECT_EQ(s.master_addr, "node7");
  EXPECT_EQ(s.master_port, 29500);
}

TEST(LaunchSettings, BadOrMissingVariablesAreRefusedByName) {
  const std::map<std::string, std::string> ok = {
      {"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&ok](const std::string& key, const char* value) {
    auto v = ok;
    if (value == nullptr)
      v.erase(key);
    else
      v[key] = value;
    return error_of(v);
  };
  EXPECT_THAT(with("WORLD_SIZE", "two"),
              AllOf(HasSubstr("WORLD_SIZE='two'"), HasSubstr("integer")));
  EXPECT_THAT(with("WORLD_SIZE", "0"), HasSubstr("WORLD_SIZE=0 is out of range"));
  EXPECT_THAT(with("WORLD_SIZE", nullptr), HasSubstr("WORLD_SIZE is not set"));
  EXPECT_THAT(with("RANK", "2"), HasSubstr("RANK=2 is not below WORLD_SIZE=2"));
  EXPECT_THAT(with("RANK", "-1"), HasSubstr("RANK=-1 is out of range"));
  EXPECT_THAT(with("RANK", nullptr), HasSubstr("RANK is not set"));
  EXPECT_THAT(with("RANK", "1x"), HasSubstr("is not an integer"));
  EXPECT_THAT(with("MASTER_ADDR", nullptr), HasSubstr("MASTER_ADDR is not set"));
  EXPECT_THAT(with("MASTER_PORT", "70000"), HasSubstr("MASTER_PORT=70000 is out of range"));
  EXPECT_THAT(with("MASTER_PORT", nullptr), HasSubstr("MASTER_PORT is not set"));
  EXPECT_THAT(with("LOCAL_RANK", "5"), HasSubstr("LOCAL_RANK=5 is out of range"));
  EXPECT_EQ(with("LOCAL_RANK", "0"), "no error");
  EXPECT_THAT(with("LOCAL_WORLD_SIZE", "3"), HasSubstr("LOCAL_WORLD_SIZE=3 is out of range"));
  EXPECT_THAT(with("LOCAL_WORLD_SIZE", "0"), HasSubstr("LOCAL_WORLD_SIZE=0 is out of range"));
  EXPECT_EQ(with("LOCAL_WORLD_SIZE", "2"), "no error");
}

// N ranks on one machine each take cores / N threads by default, not every core each.
TEST(LaunchSettings, RanksOnOneMachineShareItsCores) {
  const int cores = available_cores(), before = torch::get_num_threads();
  set_local_processes(3);
  set_num_threads(0);
  EXPECT_EQ(torch::get_num_threads(), std::max(1, cores / 3));
  set_num_threads(5);  // an explicit count is kept
  EXPECT_EQ(torch::get_num_threads(), 5);
  set_local_processes(1);
  set_num_threads(0);
  EXPECT_EQ(torch::get_num_threads(), cores);
  set_num_threads(before);
}

TEST(DataParallel, BatchSharesAreDisjointAndCoverTheBatch) {
  for (int world : {1, 2, 3, 5}) {
    for (int64_t batch : {5, 7, 16}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto s = batch_share(batch, r, world);
        EXPECT_EQ(s.begin, next);
        EXPECT_GE(s.count, batch / world);
        EXPECT_LE(s.count, batch / world + 1);
        next += s.count;
      }
      EXPECT_EQ(next, batch);
    }
  }
  EXPECT_THROW(batch_share(2, 0, 3), Error);
  for (int world : {2, 3}) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      const auto s = shard_range(10, r, world);
      EXPECT_EQ(s.begin, next);
      next += s.count;
    }
    EXPECT_EQ(next, 10);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes.

// Starts `argv` with `env` added to this process's environment, its output into `log`.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
            const std::string& log) {
  std::vector<std::string> e;
  for (char** p = environ; *p != nullptr; ++p) {
    const std::string v = *p;
    const auto key = v.substr(0, v.find('='));
    if (key == "WORLD_SIZE" || key == "RANK" || key == "MASTER_ADDR" || key == "MASTER_PORT" ||
        key == "LOCAL_RANK")
      continue;
    e.push_back(v);
  }
  e.insert(e.end(), env.begin(), env.end());
  std::vector<std::string> a = argv;
  std::vector<char*> ap, ep;
  for (auto& s : a) ap.push_back(s.data());
  ap.push_back(nullptr);
  for (auto& s : e) ep.push_back(s.data());
  ep.push_back(nullptr);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execve(ap[0], ap.data(), ep.data());
    _exit(127);
  }
  close(fd);
  return pid;
}

std::vector<std::string> rank_env(int rank, int world, int port) {
  return {"WORLD_SIZE=" + std::to_string(world), "RANK=" + std::to_string(rank),
          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits for `pid` up to `limit`; the exit status (-1 if it did not exit, -2 on a signal).
int wait_for(pid_t pid, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

int run_workers(int nproc, const std::vector<std::string>& args) {
  LocalLaunch l;
  l.program = KVTUNE_DIST_WORKER;
  l.args = args;
  l.nproc = nproc;
  l.grace = std::chrono::seconds(90);
  return launch_local(l);
}

TEST(Collectives, AllReduceGatherAllToAllAndBroadcastOnTwoAndThreeRanks) {
  EXPECT_EQ(run_workers(2, {"collectives"}), 0);
  EXPECT_EQ(run_workers(3, {"collectives"}), 0);
}

// The acceptance case "same search": a sharded bank's ids, scores and outputs equal the whole
// bank's exactly, k larger than a shard included (10 rows over 3 ranks: shards of 4, 3, 3).
TEST(ShardedBank, SearchAndAttentionEqualTheWholeBankExactly) {
  EXPECT_EQ(run_workers(2, {"sharded", "200", "16", "float32"}), 0);
  EXPECT_EQ(run_workers(3, {"sharded", "200", "16", "float64"}), 0);
  EXPECT_EQ(run_workers(3, {"sharded", "10", "6", "float64"}), 0);
  EXPECT_EQ(run_workers(2, {"sharded", "10", "10", "float32"}), 0);
}

// The same with whole banks beside the split one (6 rows before it, 9 after, all trainable), as
// a memory layer with a domain bank beside a sharded base bank: the merged top-k, ties across
// banks included, equals the banks' whole; each rank's whole-bank gradients, summed over ranks,
// equal one process's.
TEST(ShardedBank, WholeBanksBesideASplitOneMergeExactly) {
  EXPECT_EQ(run_workers(2, {"sharded", "40", "12", "float64", "mixed"}), 0);
  EXPECT_EQ(run_workers(3, {"sharded", "10", "8", "float64", "mixed"}), 0);
  EXPECT_EQ(run_workers(3, {"sharded", "200", "16", "float32", "mixed"}), 0);
}

// "A bank larger than the memory of any one process": 2^22 rows of 32 + 32 float32 (1 GiB) on
// 3 ranks, each limited to a 900 MiB data segment (setrlimit) in which the whole bank does not
// fit (checked). Each holds a third, and the search equals an exact float64 top-k streamed over
// the whole bank. Not under AddressSanitizer, whose shadow memory a data limit breaks.
TEST(ShardedBank, ABankLargerThanAnyProcessMayHoldIsSearchedInShards) {
#if defined(KVTUNE_TEST_ASAN)
  GTEST_SKIP() << "memory limits and AddressSanitizer do not mix";
#endif
  EXPECT_EQ(run_workers(3, {"sharded-limit", std::to_string(1 << 22), "900"}), 0);
}

class DistributedTrainingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto r = test::micro_recipe("pretrain");
    r.train.background_batches = 5;  // method sparse's background counts
    pretrain(r, dir_->file("base"), /*resume=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }
  // A memory fine-tune of `steps` steps (dense query projections and sparse bank rows both
  // train), as a recipe file.
  static std::string recipe(const std::string& name, int64_t steps, int64_t batch,
                            const std::string& method = "memory", bool shard = false) {
    auto r = test::micro_recipe("finetune");
    r.train.shard_base_banks = shard;
    r.name = name;
    r.base = dir_->file("base");
    r.method = method;
    if (method == "sparse") {
      r.sparse.top_t = 12;
      r.optim.bank_lr = 1.0;
    }
    r.model = "tiny";  // model_overrides (the whole micro config) replace every key of it
    r.train.steps = steps;
    r.train.batch_size = batch;
    r.train.log_every = 1;
    r.train.checkpoint_every = 5;
    r.attention.estimator = "topk";
    r.backward = "exact";
    const auto path = dir_->file(name + ".yaml");
    save_resolved_recipe(r, path);
    return path;
  }
  static test::TempDir* dir_;
};
test::TempDir* DistributedTrainingTest::dir_ = nullptr;

// Largest |a - b| over every parameter and bank tensor of two run models.
double max_weight_difference(const std::string& a_dir, const std::string& b_dir) {
  const auto a = load_run_model(a_dir + "/model");
  const auto b = load_run_model(b_dir + "/model");
  double worst = 0;
  auto pb = b.model->named_parameters();
  for (const auto& p : a.model->named_parameters()) {
    worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
  }
  auto la = a.model->memory_layers(), lb = b.model->memory_layers();
  for (size_t l = 0; l < la.size(); ++l) {
    for (size_t i = 0; i < la[l]->banks().size(); ++i) {
      const auto& x = la[l]->banks()[i]->bank();
      const auto& y = lb[l]->banks()[i]->bank();
      worst = std::max(worst, (x.keys - y.keys).abs().max().item<double>());
      worst = std::max(worst, (x.values - y.values).abs().max().item<double>());
    }
  }
  return worst;
}

// Acceptance "same weights": 20 steps on 2 ranks (each 2 of the 4 sequences of a batch) reach the
// weights of 1 process with the same global batch. Declared tolerance: 1e-5 absolute on every
// weight (float32; the all-reduce sums the two halves of each gradient in another order than one
// process does, and Adam's normalization carries those rounding differences on). The control: one
// process on half the batch (what a rank alone would learn) lies far outside it.
TEST_F(DistributedTrainingTest, TwoRanksReachTheWeightsOfOneProcess) {
  const auto r = recipe("dp", 20, 4);
  const auto one = dir_->file("one"), two = dir_->file("two"), half = dir_->file("half");
  const auto a = test::kvtune("finetune " + r + " --out " + one);
  ASSERT_EQ(a.code, 0) << a.output;
  const auto b = test::kvtune("finetune " + r + " --out " + two + " --nproc 2");
  ASSERT_EQ(b.code, 0) << b.output;
  const auto c = test::kvtune("finetune " + r + " --out " + half + " --set train.batch_size=2");
  ASSERT_EQ(c.code, 0) << c.output;
  // Rank 0 alone printed the result and wrote the run.
  EXPECT_THAT(b.output, HasSubstr("fine-tuned dp"));
  const double dp = max_weight_difference(one, two);
  const double control = max_weight_difference(one, half);
  std::printf("max |weight difference|: 2 ranks vs 1 process %.3g; half batch (control) %.3g\n", dp,
              control);
  EXPECT_LE(dp, 1e-5);
  EXPECT_GT(control, 100 * 1e-5);
  // The 2-rank run logs its traffic: the dense gradients and the sparse rows, every step.
  std::ifstream metrics(two + "/metrics.jsonl");
  nlohmann::json last;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("bytes_per_step")) last = j;
  }
  ASSERT_FALSE(last.is_null());
  EXPECT_EQ(last["world_size"], 2);
  EXPECT_GT(last["bytes_per_step"]["dense"].get<double>(), 0);
  EXPECT_GT(last["bytes_per_step"]["sparse"].get<double>(), 0);
}

// The other methods on 2 ranks against 1 process, 10 steps: sparse (its TF-IDF slot counts are
// summed over ranks before it selects rows), full (every weight, AdamW) and lora (adapters),
// within the same declared tolerance.
TEST_F(DistributedTrainingTest, EveryMethodOnTwoRanksReachesTheWeightsOfOneProcess) {
  for (const std::string method : {"sparse", "full", "lora"}) {
    const auto r = recipe("dp-" + method, 10, 4, method);
    const auto one = dir_->file(method + "-one"), two = dir_->file(method + "-two");
    const auto a = test::kvtune("finetune " + r + " --out " + one);
    ASSERT_EQ(a.code, 0) << a.output;
    const auto b = test::kvtune("finetune " + r + " --out " + two + " --nproc 2");
    ASSERT_EQ(b.code, 0) << b.output;
    const double dp = max_weight_difference(one, two);
    std::printf("%s: max |weight difference| 2 ranks vs 1 process %.3g\n", method.c_str(), dp);
    EXPECT_LE(dp, 1e-5) << method;
  }
}

// Memory parallelism in a run: method memory, 20 steps, with the base bank split over 2 ranks
// (train.shard_base_banks: each rank reads and indexes its 128 of the 256 rows) reaches the
// weights of 1 process with the bank whole, within the tolerance declared above; so does 1
// process with the option on (the sharded op over one rank). The saved base bank is the base's
// own file, byte for byte, and the run's model loads (max_weight_difference loads both).
TEST_F(DistributedTrainingTest, ABaseBankSplitOverTwoRanksTrainsAsWhole) {
  const auto r = recipe("shard", 20, 4);
  const auto one = dir_->file("shard-one"), two = dir_->file("shard-two"),
             solo = dir_->file("shard-solo");
  const std::string on = " --set train.shard_base_banks=true";
  const auto a = test::kvtune("finetune " + r + " --out " + one);
  ASSERT_EQ(a.code, 0) << a.output;
  const auto b = test::kvtune("finetune " + r + " --out " + two + " --nproc 2" + on);
  ASSERT_EQ(b.code, 0) << b.output;
  const auto c = test::kvtune("finetune " + r + " --out " + solo + on);
  ASSERT_EQ(c.code, 0) << c.output;
  EXPECT_THAT(b.output, HasSubstr("rank 0 of 2 holds rows 0 to 127 of the 256 of base bank 0"));
  EXPECT_THAT(b.output, HasSubstr("rank 1 of 2 holds rows 128 to 255 of the 256 of base bank 0"));
  const double sharded = max_weight_difference(one, two);
  const double solo_diff = max_weight_difference(one, solo);
  std::printf("max |weight difference| vs 1 process whole: 2 ranks sharded %.3g, 1 rank %.3g\n",
              sharded, solo_diff);
  EXPECT_LE(sharded, 1e-5);
  EXPECT_LE(solo_diff, 1e-5);
  for (const auto& dir : {two, dir_->file("base")}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/model/bank_0.faiss")) << dir;
  }
  EXPECT_EQ(slurp(two + "/model/bank_0.h5"), slurp(dir_->file("base") + "/model/bank_0.h5"));
  EXPECT_EQ(slurp(two + "/model/bank_0.faiss"), slurp(dir_->file("base") + "/model/bank_0.faiss"));
}

// Method sparse with the base bank split over 2 ranks: each rank trains the rows it holds of the
// slots every rank selects from the summed retrieval counts. 20 steps must reach the weights (the
// base with its patch applied: max_weight_difference loads the runs as `kvtune eval` does) of 1
// process with the bank whole, within the tolerance declared above. The patch must change the
// same slots, some in each shard, and the saved base bank must be the base's own file.
TEST_F(DistributedTrainingTest, SparseOnABaseBankSplitOverTwoRanksTrainsAsWhole) {
  const auto whole = recipe("sparse-whole", 20, 4, "sparse");
  const auto split = recipe("sparse-split", 20, 4, "sparse", /*shard=*/true);
  const auto one = dir_->file("sparse-whole-run"), two = dir_->file("sparse-split-run");
  const auto a = test::kvtune("finetune " + whole + " --out " + one);
  ASSERT_EQ(a.code, 0) << a.output;
  const auto b = test::kvtune("finetune " + split + " --out " + two + " --nproc 2");
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_THAT(b.output, HasSubstr("rank 1 of 2 holds rows 128 to 255 of the 256 of base bank 0"));
  const double diff = max_weight_difference(one, two);
  std::printf("sparse: max |weight difference| 2 ranks sharded vs 1 process whole %.3g\n", diff);
  EXPECT_LE(diff, 1e-5);
  const Bank pa = read_bank(one + "/model/patch_0.h5");
  const Bank pb = read_bank(two + "/model/patch_0.h5");
  ASSERT_TRUE(torch::equal(pa.slot_ids, pb.slot_ids));
  EXPECT_GT((pa.slot_ids < 128).sum().item<int64_t>(), 0);
  EXPECT_GT((pa.slot_ids >= 128).sum().item<int64_t>(), 0);
  EXPECT_LE((pa.values - pb.values).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(pa.meta.model_fingerprint, pb.meta.model_fingerprint);
  EXPECT_EQ(slurp(two + "/model/bank_0.h5"), slurp(dir_->file("base") + "/model/bank_0.h5"));
}

// Resume with split banks: a 2-rank sparse run with the base bank split, stopped at step 7
// (checkpoints at 5 and 7), leaves checkpoint.pt and rank 1's own file of step 7 only. Resuming
// it with 1 process is refused by name; on 2 ranks it reaches the weights of an uninterrupted
// 2-rank run exactly.
TEST_F(DistributedTrainingTest, ATwoRankCheckpointWithSplitBanksResumesToTheSameWeights) {
  const auto r = recipe("sparse-split-resume", 12, 4, "sparse", /*shard=*/true);
  const auto whole = dir_->file("split-whole"), parts = dir_->file("split-parts");
  ASSERT_EQ(run_workers(2, {"finetune", r, whole, "0", "fresh"}), 0);
  ASSERT_EQ(run_workers(2, {"finetune", r, parts, "7", "fresh"}), 0);
  ASSERT_TRUE(fs::exists(parts + "/checkpoint.pt"));
  EXPECT_TRUE(fs::exists(parts + "/checkpoint.rank1.step7.pt"));
  EXPECT_FALSE(fs::exists(parts + "/checkpoint.rank1.step5.pt"));
  EXPECT_FALSE(fs::exists(parts + "/checkpoint.rank0.step7.pt"));
  const auto solo = test::kvtune("finetune " + r + " --out " + parts + " --resume");
  EXPECT_NE(solo.code, 0);
  EXPECT_THAT(solo.output, HasSubstr("written by 2 ranks with split base banks"));
  EXPECT_THAT(solo.output, HasSubstr("resume with --nproc 2"));
  ASSERT_EQ(run_workers(2, {"finetune", r, parts, "0", "resume"}), 0);
  EXPECT_EQ(max_weight_difference(whole, parts), 0.0);
  // --overwrite removes the ranks' own files with the rest of the run.
  ASSERT_TRUE(fs::exists(parts + "/checkpoint.rank1.step10.pt"));
  const auto again =
      test::kvtune("finetune " + r + " --out " + parts + " --overwrite --set train.steps=2");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_FALSE(fs::exists(parts + "/checkpoint.rank1.step10.pt"));
}

// Acceptance "resume": a 2-rank run stopped at step 7 (checkpoint at 5) and resumed on 2 ranks
// reaches the weights of an uninterrupted 2-rank run exactly.
TEST_F(DistributedTrainingTest, ATwoRankCheckpointResumesToTheSameWeights) {
  const auto r = recipe("dp-resume", 12, 4);
  const auto whole = dir_->file("whole"), parts = dir_->file("parts");
  ASSERT_EQ(run_workers(2, {"finetune", r, whole, "0", "fresh"}), 0);
  ASSERT_EQ(run_workers(2, {"finetune", r, parts, "7", "fresh"}), 0);
  ASSERT_TRUE(fs::exists(parts + "/checkpoint.pt"));
  ASSERT_FALSE(fs::exists(parts + "/model/model.pt"));
  ASSERT_EQ(run_workers(2, {"finetune", r, parts, "0", "resume"}), 0);
  EXPECT_EQ(max_weight_difference(whole, parts), 0.0);
}

// Starts 3 ranks of a long fine-tune, sends rank 1 `sig` once training is under way, and checks
// that ranks 0 and 2 exit 1 within `timeout` + 10 s, naming rank 1.
void fault_case(const std::string& name, const std::string& recipe, int sig, int timeout,
                const std::string& out) {
  const int port = free_local_port();
  std::vector<pid_t> pids;
  struct Reaper {  // no rank outlives the test, whatever it asserts
    std::vector<pid_t>* pids;
    ~Reaper() {
      for (pid_t p : *pids) {
        if (kill(p, SIGKILL) == 0) waitpid(p, nullptr, 0);
      }
    }
  } reaper{&pids};
  for (int rank = 0; rank < 3; ++rank) {
    pids.push_back(spawn({std::string(KVTUNE_BINARY_DIR) + "/kvtune", "finetune", recipe, "--out",
                          out, "--dist-timeout", std::to_string(timeout)},
                         rank_env(rank, 3, port), out + "-" + std::to_string(rank) + ".log"));
  }
  // Training is under way once rank 0 has logged a step.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < until &&
         slurp(out + "/metrics.jsonl").find("\"step\"") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(slurp(out + "/metrics.jsonl").find("\"step\""), std::string::npos)
      << slurp(out + "-0.log");
  kill(pids[1], sig);
  const auto sent_at = std::chrono::steady_clock::now();
  for (int rank : {0, 2}) {
    const int code = wait_for(pids[rank], std::chrono::seconds(timeout + 30));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - sent_at).count();
    const auto log = slurp(out + "-" + std::to_string(rank) + ".log");
    const auto error_at = log.rfind("kvtune: error:");
    std::printf("%s: rank %d exited %d, %.1f s after the signal: %s", name.c_str(), rank, code,
                took,
                error_at == std::string::npos ? "(no error line)\n" : log.substr(error_at).c_str());
    EXPECT_EQ(code, 1) << "rank " << rank << " after " << took << " s:\n" << log;
    EXPECT_LE(took, timeout + 10);
    EXPECT_THAT(log, HasSubstr("rank(s) 1 stopped")) << log;
  }
}

// Faults: a killed rank makes the others exit non-zero within the timeout, naming it. Its
// connections close, so they notice at their next collective, long before the timeout.
TEST_F(DistributedTrainingTest, KillingOneRankMakesTheOthersFailWithinTheTimeout) {
  fault_case("killed", recipe("dp-kill", 100000, 6), SIGKILL, 20, dir_->file("killed"));
}

// Faults: a rank that hangs (stopped, its connections open) makes the others fail once the
// timeout passes.
TEST_F(DistributedTrainingTest, AHungRankMakesTheOthersFailAfterTheTimeout) {
  fault_case("hung", recipe("dp-hang", 100000, 6), SIGSTOP, 15, dir_->file("hung"));
}

// Faults: a bad launch is refused before any work (no output folder), with the variable named.
TEST_F(DistributedTrainingTest, BadLaunchVariablesAreRefusedBeforeAnyWork) {
  const auto r = recipe("dp-bad", 5, 4);
  const auto out = dir_->file("never");
  const std::string kv = std::string(KVTUNE_BINARY_DIR) + "/kvtune finetune " + r + " --out " + out;
  const auto rank = test::run_command(
      "env WORLD_SIZE=2 RANK=2 MASTER_ADDR=127.0.0.1 "
      "MASTER_PORT=29999 " +
      kv);
  EXPECT_EQ(rank.code, 1);
  EXPECT_THAT(rank.output, HasSubstr("RANK=2 is not below WORLD_SIZE=2"));
  const auto world = test::run_command("env WORLD_SIZE=abc RANK=0 " + kv);
  EXPECT_EQ(world.code, 1);
  EXPECT_THAT(world.output, HasSubstr("WORLD_SIZE='abc' is not an integer"));
  const auto addr = test::run_command("env -u MASTER_ADDR WORLD_SIZE=2 RANK=1 MASTER_PORT=1 " + kv);
  EXPECT_EQ(addr.code, 1);
  EXPECT_THAT(addr.output, HasSubstr("MASTER_ADDR is not set"));
  const auto nested = test::run_command(
      "env WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 "
      "MASTER_PORT=29999 " +
      kv + " --nproc 2");
  EXPECT_EQ(nested.code, 1);
  EXPECT_THAT(nested.output, HasSubstr("WORLD_SIZE or RANK is already set"));
  // More ranks than sequences in a batch: refused at the first step, on every rank.
  const auto tiny = test::kvtune("finetune " + recipe("dp-tiny", 5, 2) + " --out " +
                                 dir_->file("tiny") + " --nproc 3");
  EXPECT_NE(tiny.code, 0);
  EXPECT_THAT(tiny.output, HasSubstr("train.batch_size 2 is smaller than the 3 ranks"));
  EXPECT_FALSE(fs::exists(out));
}

// Faults: an unreachable master, and a port already in use, each end with a clear error.
TEST_F(DistributedTrainingTest, AnUnreachableMasterAndAPortInUseAreClearErrors) {
  const auto r = recipe("dp-net", 5, 4);
  const std::string kv = std::string(KVTUNE_BINARY_DIR) + "/kvtune finetune " + r +
                         " --dist-timeout 3 --out " + dir_->file("net");
  // Nobody listens on a port that was just free: rank 1 gives up after the timeout.
  const int silent = free_local_port();
  const auto t0 = std::chrono::steady_clock::now();
  const auto lost = test::run_command("env WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                      std::to_string(silent) + " " + kv);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(lost.code, 1) << lost.output;
  EXPECT_THAT(lost.output, HasSubstr("cannot reach the rendezvous store at 127.0.0.1:"));
  EXPECT_LE(took, 60);
  // A port this test holds: rank 0 cannot run the store there.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const auto busy = test::run_command("env WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                      std::to_string(ntohs(a.sin_port)) + " " + kv);
  close(fd);
  EXPECT_EQ(busy.code, 1) << busy.output;
  EXPECT_THAT(busy.output, HasSubstr("the port is in use"));
}

}  // namespace
}  // namespace kvtune

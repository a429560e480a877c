// kvtune pretrain | finetune RECIPE [--set key=value]... [--out DIR] [--resume | --overwrite]
//                            [--nproc N] [--dist-timeout SECONDS]
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "common/check.h"
#include "common/communicator.h"
#include "common/local_launcher.h"
#include "common/path_checks.h"
#include "common/threads.h"
#include "data/corpus.h"
#include "data/text_data.h"
#include "eval/evaluate.h"
#include "model/model_config_yaml.h"
#include "model/model_io.h"
#include "train/background_counts.h"
#include "train/recipe_io.h"
#include "train/trainer.h"

namespace kvtune::cli {
namespace {

namespace fs = std::filesystem;

struct RunArgs {
  std::string recipe, out, configs;
  std::vector<std::string> sets;
  bool resume = false, overwrite = false;
  int nproc = 1;
  int dist_timeout = 300;
};

// Several processes (docs/distributed.md). With --nproc N > 1 this process is the launcher: it
// starts N ranks of the same command (without --nproc) and returns true once they all succeed.
// Otherwise it returns false and the caller runs the command itself.
bool launch_ranks(const RunArgs& a) {
  if (a.nproc <= 1) return false;
  LocalLaunch l;
  l.program = fs::read_symlink("/proc/self/exe").string();
  const auto& argv = program_args();
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "--nproc") {
      ++i;
      continue;
    }
    if (argv[i].rfind("--nproc=", 0) == 0) continue;
    l.args.push_back(argv[i]);
  }
  l.nproc = a.nproc;
  l.grace = std::chrono::seconds(a.dist_timeout + 30);
  const int rc = launch_local(l);
  KVT_CHECK(rc == 0, "the run failed on ", a.nproc,
            " processes (the rank(s) named above, and their messages, say why)");
  return true;
}

// One rank of a multi-process run while in scope (the launch variables say so), else nothing.
class JoinedWorld {
 public:
  explicit JoinedWorld(const RunArgs& a) {
    LaunchSettings s = launch_settings_from_env();
    s.timeout = std::chrono::seconds(a.dist_timeout);
    set_local_processes(s.local_world_size);  // the recipe's train.threads: 0 = this rank's share
    if (s.distributed()) set_world(Communicator::connect(s));
  }
  ~JoinedWorld() {
    set_world(std::make_shared<Communicator>());
    set_local_processes(1);
  }
  JoinedWorld(const JoinedWorld&) = delete;
  JoinedWorld& operator=(const JoinedWorld&) = delete;
};

Recipe load(const RunArgs& a) {
  const std::string configs = a.configs.empty() ? default_configs_dir(a.recipe) : a.configs;
  Recipe r = load_recipe(a.recipe, a.sets, configs);
  // Fine-tuning uses the base's own model: validate the recipe against that, not `model:`.
  const auto base_config = fs::path(r.base) / "model" / "config.yaml";
  if (r.mode == "finetune" && is_file(base_config)) {
    r.model_config = load_model_config(base_config.string());
  }
  validate_recipe(r, a.recipe);
  return r;
}

std::string out_dir(const RunArgs& a, const Recipe& r) {
  return a.out.empty() ? (fs::path("runs") / r.name).string() : a.out;
}

void print_pair(const char* what, const LmMetrics& before, const LmMetrics& after) {
  std::printf("%-8s token accuracy %6.2f%% -> %6.2f%%  (%+.2f points)   loss %.4f -> %.4f\n", what,
              100 * before.token_accuracy, 100 * after.token_accuracy,
              100 * (after.token_accuracy - before.token_accuracy), before.loss, after.loss);
}

CLI::App* add_run_command(CLI::App& app, const std::string& name, const std::string& help,
                          std::shared_ptr<RunArgs> a) {
  auto* c = app.add_subcommand(name, help);
  c->add_option("recipe", a->recipe, "Recipe YAML file (recipes/*.yaml)")->required();
  c->add_option("--set", a->sets, "Override a recipe key: --set train.steps=50 (repeatable)");
  c->add_option("--out", a->out, "Output folder (default: runs/NAME)");
  c->add_option("--configs", a->configs, "Folder of model and index configs");
  c->add_flag("--resume", a->resume,
              "Continue the run in the output folder from its last checkpoint (the recipe must "
              "be the run's own; docs/training.md)");
  c->add_flag("--overwrite", a->overwrite,
              "Replace the run the output folder holds (its model, checkpoint, metrics, report)")
      ->excludes("--resume");
  c->add_option("--nproc", a->nproc,
                "Train data-parallel on N local processes (docs/distributed.md); several "
                "machines: start one process per rank with MASTER_ADDR, MASTER_PORT, WORLD_SIZE "
                "and RANK set, as torchrun does")
      ->check(CLI::Range(1, 256));
  c->add_option("--dist-timeout", a->dist_timeout,
                "Seconds a rank waits for the others (rendezvous, each collective) before it "
                "fails (default 300)")
      ->check(CLI::Range(1, 86400));
  return c;
}

struct BackgroundArgs {
  std::string model, out;
  std::vector<std::string> data;
  int64_t batches = 100, batch_size = 16, seq_len = 0;
  uint64_t seed = 1;
};

// kvtune background: the background access counts of method sparse for an existing model
// folder (what pretraining writes with train.background_batches).
void run_background(const BackgroundArgs& a) {
  auto loaded = load_model(a.model);
  DataConfig data;
  if (const auto recipe = run_recipe(a.model)) data = recipe->data;
  if (!a.data.empty()) data.general = a.data;
  if (a.seq_len > 0) data.seq_len = a.seq_len;
  KVT_CHECK(data.seq_len <= loaded.config.max_seq_len, "--seq-len ", data.seq_len,
            " is longer than the model's max_seq_len ", loaded.config.max_seq_len,
            ": give --seq-len ", loaded.config.max_seq_len, " or less");
  for (const auto& name : data.general) check_corpus_available(name, "--data");
  KVT_CHECK(!loaded.model->memory_layers().empty(), a.model,
            ": the model has no memory layer: background counts are of base-bank slots");
  const auto split = load_split(data.general, data, *loaded.tokenizer);
  const auto counts =
      count_background(loaded.model, *split.train, a.batches, a.batch_size, a.seed + 0x5eed);
  const std::string out = a.out.empty() ? (fs::path(a.model) / kBackgroundFile).string() : a.out;
  write_background(out, counts);
  std::printf("counted base-bank retrievals over %lld batches of",
              static_cast<long long>(a.batches));
  for (const auto& n : data.general) std::printf(" %s", n.c_str());
  std::printf(" (training side):");
  for (size_t i = 0; i < counts.df.size(); ++i) {
    const auto seen = (counts.df[i] > 0).sum().item<int64_t>();
    std::printf(" layer %zu: %lld of %lld slots retrieved;", i, static_cast<long long>(seen),
                static_cast<long long>(counts.df[i].size(0)));
  }
  std::printf("\nwrote %s\n", out.c_str());
}

}  // namespace

namespace {
std::vector<std::string>& args_slot() {
  static std::vector<std::string> args;
  return args;
}
}  // namespace

void set_program_args(int argc, char** argv) {
  args_slot().assign(argv, argv + argc);
}

const std::vector<std::string>& program_args() {
  return args_slot();
}

std::string default_configs_dir(const std::string& recipe) {
  const auto beside = std::filesystem::absolute(recipe).parent_path().parent_path() / "configs";
  if (is_folder(beside)) return beside.string();
  return std::string(KVTUNE_SOURCE_DIR) + "/configs";
}

void add_train_commands(CLI::App& app) {
  auto bg = std::make_shared<BackgroundArgs>();
  auto* b =
      app.add_subcommand("background",
                         "Count how often a model retrieves each base-bank slot on general text "
                         "(background counts of method sparse)");
  b->add_option("--model", bg->model, "Model folder (runs/NAME/model)")->required();
  b->add_option("--data", bg->data,
                "General corpus (name or .txt/.jsonl path; repeatable; default: the run's "
                "data.general, else wn)");
  b->add_option("--batches", bg->batches, "Background batches (default 100)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  b->add_option("--batch-size", bg->batch_size, "Sequences per batch (default 16)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  b->add_option("--seq-len", bg->seq_len, "Tokens per sequence (default: the run's recipe)")
      ->check(CLI::PositiveNumber);
  b->add_option("--seed", bg->seed, "Seed of the batches (default 1)");
  b->add_option("--out", bg->out, "Output file (default: MODEL/background.h5)");
  b->callback([bg] { run_background(*bg); });

  auto pre = std::make_shared<RunArgs>();
  add_run_command(app, "pretrain", "Pretrain a base model and its base banks on general text", pre)
      ->callback([pre] {
        const Recipe r = load(*pre);
        if (launch_ranks(*pre)) return;
        const JoinedWorld joined(*pre);
        const auto dir = out_dir(*pre, r);
        const auto o = pretrain(r, dir, pre->resume, pre->overwrite);
        if (!world().is_writer()) return;
        std::printf("pretrained %s: %lld steps in %.1f s (%.0f tokens/s) -> %s/model\n",
                    r.name.c_str(), static_cast<long long>(o.steps), o.seconds, o.tokens_per_second,
                    dir.c_str());
      });
  auto fine = std::make_shared<RunArgs>();
  add_run_command(app, "finetune", "Fine-tune a pretrained base on a domain", fine)
      ->callback([fine] {
        const Recipe r = load(*fine);
        if (launch_ranks(*fine)) return;
        const JoinedWorld joined(*fine);
        const auto dir = out_dir(*fine, r);
        const auto o = finetune(r, dir, fine->resume, domain_metrics_for(r), fine->overwrite);
        if (!world().is_writer()) return;
        std::printf("fine-tuned %s (method %s): %lld steps in %.1f s, %lld trainable parameters\n",
                    r.name.c_str(), r.method.c_str(), static_cast<long long>(o.train.steps),
                    o.train.seconds, static_cast<long long>(o.train.trainable_parameters));
        print_pair(("domain (" + r.data.domain + ")").c_str(), o.before.domain, o.after.domain);
        print_pair("general", o.before.general, o.after.general);
        if (o.report.contains("domain") && o.report["domain"]["after"].contains("exact_match")) {
          const auto& b = o.report["domain"]["before"];
          const auto& af = o.report["domain"]["after"];
          const auto pct = [](const nlohmann::json& m, const char* key) {
            return 100 * m.value(key, 0.0);
          };
          std::printf(
              "recall in held-out wordings, trained facts %.2f%% -> %.2f%%; control %.2f%% -> "
              "%.2f%% (chance %.2f%%)\n",
              pct(b, "wording_recall"), pct(af, "wording_recall"), pct(b, "wording_recall_control"),
              pct(af, "wording_recall_control"), pct(af, "wording_chance"));
          std::printf(
              "question answering, trained facts %.2f%% -> %.2f%%; control %.2f%% -> %.2f%% "
              "(chance %.2f%%)\n",
              pct(b, "exact_match"), pct(af, "exact_match"), pct(b, "exact_match_control"),
              pct(af, "exact_match_control"), pct(af, "chance"));
        }
        std::printf("report: %s/report.json, %s/report.md\n", dir.c_str(), dir.c_str());
      });
}

}  // namespace kvtune::cli

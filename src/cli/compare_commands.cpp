// kvtune compare RECIPE [--set key=value]... [--out DIR] [--methods memory,full,lora] [--rerun]
//
// Each method runs as its own `kvtune finetune` process, so that its peak memory is its own.
// A method whose folder already holds a finished run of the same resolved recipe is collected,
// not run again.
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "common/check.h"
#include "common/path_checks.h"
#include "eval/compare.h"
#include "model/model_config_yaml.h"
#include "train/recipe_io.h"

extern char** environ;

namespace kvtune::cli {
namespace {

namespace fs = std::filesystem;

struct CompareArgs {
  std::string recipe, out, configs;
  std::vector<std::string> sets, methods, sweeps;
  double budget = -1;
  bool rerun = false;
  bool plots = true;
};

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::string resolved_text(const Recipe& r) {
  return YAML::Dump(recipe_to_yaml(r));
}

// True when `dir` holds a finished run of exactly this resolved recipe.
bool finished_run_of(const std::string& dir, const Recipe& expected, const std::string& configs) {
  const auto recipe_path = fs::path(dir) / "recipe.yaml";
  if (!is_file(fs::path(dir) / "report.json") || !is_file(recipe_path)) {
    return false;
  }
  try {
    return resolved_text(load_recipe(recipe_path.string(), {}, configs)) == resolved_text(expected);
  } catch (const Error&) {
    return false;
  }
}

int run_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0].c_str(), nullptr, nullptr, argv.data(), environ);
  KVT_CHECK(rc == 0, "cannot start ", args[0], ": ", std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    KVT_CHECK(errno == EINTR, "waitpid failed: ", std::strerror(errno));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void run_compare(const CompareArgs& a) {
  const std::string configs = a.configs.empty() ? default_configs_dir(a.recipe) : a.configs;
  const Recipe recipe = load_recipe(a.recipe, a.sets, configs);
  KVT_CHECK(recipe.mode == "finetune", a.recipe, ": mode is '", recipe.mode,
            "': compare fine-tuning recipes");
  const std::string out =
      a.out.empty() ? (fs::path("runs") / ("compare-" + recipe.name)).string() : a.out;
  std::vector<std::string> methods = a.methods.empty() ? compared_methods() : a.methods;
  std::vector<SweepAxis> axes;
  for (const auto& text : a.sweeps) axes.push_back(parse_sweep(text));
  for (const auto& axis : axes) {
    KVT_CHECK(axis.method.empty() ||
                  std::find(methods.begin(), methods.end(), axis.method) != methods.end(),
              "--sweep ", axis.method, ":", axis.key, ": method ", axis.method,
              " is not among the methods compared (--methods)");
  }
  for (const auto& m : methods) {
    KVT_CHECK(std::find(compared_methods().begin(), compared_methods().end(), m) !=
                  compared_methods().end(),
              "--methods: unknown method '", m, "': choose from ", join(compared_methods()));
  }
  // Every point's recipe is read and validated before any run starts: a bad sweep key or value
  // fails here, naming the --sweep.
  struct Point {
    std::string method, dir;
    std::vector<std::string> setting, sets;
    Recipe expected;
  };
  std::vector<Point> plan;
  for (const auto& method : methods) {
    std::vector<std::string> shipped_sets = a.sets;
    shipped_sets.push_back("method=" + method);
    const std::string shipped = resolved_text(load_recipe(a.recipe, shipped_sets, configs));
    for (const auto& setting : sweep_settings(axes, method)) {
      Point p;
      p.method = method;
      p.setting = setting;
      p.sets = shipped_sets;
      for (const auto& s : setting) p.sets.push_back(s);
      try {
        p.expected = load_recipe(a.recipe, p.sets, configs);
        Recipe checked = p.expected;
        const auto base_config = fs::path(checked.base) / "model" / "config.yaml";
        if (is_file(base_config)) checked.model_config = load_model_config(base_config.string());
        validate_recipe(checked, a.recipe);
      } catch (const Error& e) {
        std::string set;
        for (const auto& s : setting) set += (set.empty() ? "" : " ") + s;
        KVT_THROW("compare: method ", method, (set.empty() ? "" : " with --sweep setting "), set,
                  ": ", e.what());
      }
      // A sweep value equal to the recipe's own is the shipped setting: one run, the headline.
      if (resolved_text(p.expected) == shipped) p.setting.clear();
      p.dir =
          (fs::path(out) / (p.setting.empty() ? method : method + "@" + setting_name(p.setting)))
              .string();
      plan.push_back(std::move(p));
    }
  }
  KVT_CHECK(plan.size() <= 256, "compare: the sweep makes ", plan.size(),
            " runs; at most 256 are allowed: sweep fewer values");
  // The running binary itself, even if a rebuild has replaced the file since it started.
  const std::string self = "/proc/self/exe";
  std::vector<MethodRun> runs;
  for (const auto& p : plan) {
    const std::string& dir = p.dir;
    const std::string label = setting_name(p.setting).empty()
                                  ? p.method
                                  : p.method + " (" + setting_name(p.setting) + ")";
    if (!a.rerun && finished_run_of(dir, p.expected, configs)) {
      std::printf("compare: %s: collecting the finished run in %s\n", label.c_str(), dir.c_str());
    } else {
      if (path_exists(dir)) {
        KVT_CHECK(a.rerun || !path_exists(fs::path(dir) / "report.json"), dir,
                  " holds a finished run of another recipe or settings: use another --out, or "
                  "--rerun to replace it");
      }
      std::vector<std::string> args = {self, "finetune",  a.recipe, "--out",
                                       dir,  "--configs", configs};
      for (const auto& s : p.sets) {
        args.push_back("--set");
        args.push_back(s);
      }
      // An unfinished run of the same recipe continues from its checkpoint; --rerun replaces it.
      args.push_back(a.rerun ? "--overwrite" : "--resume");
      std::printf("compare: %s: running", label.c_str());
      for (size_t i = 1; i < args.size(); ++i) std::printf(" %s", args[i].c_str());
      std::printf("\n");
      std::fflush(stdout);
      const int rc = run_child(args);
      KVT_CHECK(rc == 0, "compare: `kvtune finetune` for ", label, " failed (exit ", rc,
                "); its output is above");
    }
    runs.push_back(read_method_run(p.method, dir, p.setting));
  }
  const auto comparison = compare_runs(runs, a.budget);
  write_comparison(out, runs, comparison);
  std::cout << compare_markdown(comparison);
  std::printf("\nwrote %s/compare.json, compare.md and the .tsv tables\n", out.c_str());
  const std::string plot = std::string(KVTUNE_SOURCE_DIR) + "/tools/plot-compare";
  if (!a.plots) return;
  if (!path_exists(plot)) {
    std::printf("plots: %s not found; skipped\n", plot.c_str());
    return;
  }
  std::fflush(stdout);
  const int rc = run_child({"/bin/sh", plot, out});
  if (rc != 0) {
    std::fprintf(stderr,
                 "kvtune: warning: %s failed (exit %d): no plots; install gnuplot-nox "
                 "(tools/setup does)\n",
                 plot.c_str(), rc);
  }
}

}  // namespace

void add_compare_commands(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  auto* c = app.add_subcommand(
      "compare", "Fine-tune one recipe with memory, full and lora; compare gains and forgetting");
  c->add_option("recipe", a->recipe, "Fine-tuning recipe (recipes/*.yaml)")->required();
  c->add_option("--set", a->sets, "Override a recipe key for every method (repeatable)");
  c->add_option("--out", a->out, "Comparison folder (default: runs/compare-NAME)");
  c->add_option("--configs", a->configs, "Folder of model and index configs");
  c->add_option("--methods", a->methods, "Methods, comma-separated (default: memory,full,lora)")
      ->delimiter(',');
  c->add_option("--sweep", a->sweeps,
                "[METHOD:]KEY=V1,V2,...: run each method (or only METHOD) at every value of a "
                "recipe key; several --sweep make a grid (repeatable)");
  c->add_option("--budget", a->budget,
                "Forgetting budget in points for each method's best point (default: a third of "
                "full's forgetting)")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--rerun", a->rerun, "Run every method again, replacing finished runs");
  c->add_flag("!--no-plots", a->plots, "Do not draw the PNG plots");
  c->callback([a] { run_compare(*a); });
}

}  // namespace kvtune::cli

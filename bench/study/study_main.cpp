// kvtune_study: the sampled-attention study (docs/sampled-attention.md, "Study"). Writes one
// JSON file per part into --out-dir; tools/plot-study turns them into tables and plots.
// Not a test: nothing asserts, and its times are measurements of one run on one machine.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/threads.h"
#include "index/index_config_yaml.h"
#include "study.h"

namespace {

nlohmann::json load_average() {
  double avg[3] = {0, 0, 0};
  if (getloadavg(avg, 3) != 3) return nullptr;
  return {avg[0], avg[1], avg[2]};
}

// Measured values to 6 significant digits: the files stay small and no figure needs more.
void round_floats(nlohmann::json& j) {
  if (j.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", j.get<double>());
    j = std::strtod(buf, nullptr);
  } else if (j.is_structured()) {
    for (auto& v : j) round_floats(v);
  }
}

// One key per line and one line per element of an array of records: readable diffs, small files.
std::string dump_lines(const nlohmann::json& j) {
  std::string s = "{\n";
  bool first = true;
  for (const auto& [key, v] : j.items()) {
    s += first ? " " : ",\n ";
    first = false;
    s += nlohmann::json(key).dump() + ": ";
    if (v.is_array() && !v.empty() && v[0].is_object()) {
      s += "[\n";
      for (size_t i = 0; i < v.size(); ++i)
        s += "  " + v[i].dump() + (i + 1 < v.size() ? ",\n" : "\n");
      s += " ]";
    } else {
      s += v.dump();
    }
  }
  return s + "\n}\n";
}

}  // namespace

int main(int argc, char** argv) {
  namespace st = kvtune::study;
  CLI::App app{"kvtune_study: error, cost and top-k mass of the sampled attention estimators"};
  std::vector<std::string> parts = {"error", "cost", "mass", "trained"};  // "index" on request
  std::string out_dir = "docs/data";
  bool quick = false;
  int threads = 0;
  st::ErrorStudyOptions error;
  st::CostStudyOptions cost;
  st::MassStudyOptions mass;
  st::TrainedStudyOptions trained;
  std::string runs_dir = "runs";
  std::vector<std::string> run_names = {"pretrain-general", "foldoc-memory", "jargon",
                                        "elements-facts"};
  app.add_option("--parts", parts, "parts to run: error cost mass trained index")
      ->check(CLI::IsMember({"error", "cost", "mass", "trained", "index"}));
  app.add_option("--out-dir", out_dir, "folder of the JSON files (study_<part>.json)");
  app.add_flag("--quick", quick, "small sizes: a check that everything runs, not figures to quote");
  app.add_option("--threads", threads, "threads for the error, mass and trained parts (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--cost-threads", cost.threads, "threads for the timed cost part")
      ->check(CLI::PositiveNumber);
  int64_t cost_max_n = 1000000;
  app.add_option("--cost-max-n", cost_max_n, "largest n of the cost part (default 1e6)");
  app.add_option("--cost-repeats", cost.repeats, "timings: the minimum over this many runs")
      ->check(CLI::PositiveNumber);
  app.add_option("--scales", error.scales, "score scales of the error part (0: sqrt(d_k))")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dk", error.dk, "key (and value) dim of the error part")
      ->check(CLI::PositiveNumber);
  app.add_option("--groups", error.groups, "groups of the gumbel estimator in the error part")
      ->check(CLI::PositiveNumber);
  app.add_option("--runs-dir", runs_dir, "folder of trained runs for the trained part (read only)");
  app.add_option("--runs", run_names, "runs of the trained part: RUNS_DIR/NAME/model is loaded");
  app.add_option("--seed", error.seed, "seed of banks, queries and samplers");
  st::IndexStudyOptions index;
  std::vector<std::string> index_configs, index_factories;
  std::string configs_dir = "configs";
  app.add_option("--index-configs", index_configs,
                 "index part: shipped config names (configs/index/NAME.yaml) or YAML paths");
  app.add_option("--index-factories", index_factories,
                 "index part: faiss factory strings, each with the default train_size and seed");
  app.add_option("--index-nprobes", index.nprobes,
                 "index part: search each config at these nprobe (default: its own)")
      ->check(CLI::PositiveNumber);
  app.add_option("--index-n", index.n, "index part: keys in the bank")->check(CLI::PositiveNumber);
  app.add_option("--index-dk", index.dk, "index part: key dim")->check(CLI::PositiveNumber);
  app.add_option("--index-ks", index.ks, "index part: k of recall@k")->check(CLI::PositiveNumber);
  app.add_option("--index-queries", index.queries, "index part: queries")
      ->check(CLI::PositiveNumber);
  app.add_option("--index-keys", index.key_kinds, "index part: random and/or clustered keys")
      ->check(CLI::IsMember({"random", "clustered"}));
  app.add_option("--index-threads", index.threads, "index part: threads")
      ->check(CLI::PositiveNumber);
  app.add_option("--configs-dir", configs_dir, "folder of the shipped configs (index part)");
  CLI11_PARSE(app, argc, argv);
  index.seed = error.seed;
  cost.seed = mass.seed = error.seed;
  for (const auto& name : run_names) trained.model_dirs.push_back(runs_dir + "/" + name + "/model");

  if (quick) {
    error.ns = {1000, 10000};
    error.queries = 16;
    error.samples = {16, 64, 256};
    error.gumbel_budget = 1e6;
    cost.ns = {1000, 3000, 10000, 30000, 100000};
    cost.queries = 8;
    cost.repeats = 1;
    mass.ns = {1000, 10000, 100000};
    mass.queries = 16;
    trained.windows = 2;
  }
  // The largest n of the cost grid may be lowered (memory, time): drop the points above it.
  while (cost.ns.size() > 1 && cost.ns.back() > cost_max_n) cost.ns.pop_back();

  std::string command;
  try {
    for (const auto& name : index_configs) {
      index.configs.push_back(
          kvtune::load_index_config(kvtune::index_config_path(name, configs_dir)));
    }
  } catch (const kvtune::Error& e) {
    std::cerr << "kvtune_study: error: " << e.what() << "\n";
    return 1;
  }
  for (const auto& factory : index_factories) {
    kvtune::IndexConfig c;
    c.factory = factory;
    index.configs.push_back(c);
  }
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  try {
    std::filesystem::create_directories(out_dir);
    for (const auto& part : parts) {
      kvtune::set_num_threads(threads);  // the cost part sets its own
      const auto load_before = load_average();
      const auto t0 = std::chrono::steady_clock::now();
      nlohmann::json j;
      if (part == "error") j = st::run_error_study(error);
      if (part == "cost") j = st::run_cost_study(cost);
      if (part == "mass") j = st::run_mass_study(mass);
      if (part == "trained") j = st::run_trained_study(trained);
      if (part == "index") j = st::run_index_study(index);
      j["command"] = command;
      j["quick"] = quick;
      j["wall_seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      j["load_average_before"] = load_before;
      j["load_average_after"] = load_average();
      j["threads"] = part == "cost"    ? cost.threads
                     : part == "index" ? index.threads
                                       : kvtune::available_cores();
      if (threads > 0 && part != "cost" && part != "index") j["threads"] = threads;
      const std::string path = out_dir + "/study_" + part + ".json";
      round_floats(j);
      kvtune::write_file_atomic(path, dump_lines(j));
      std::printf("study: part %s took %.1f s, wrote %s\n", part.c_str(),
                  j["wall_seconds"].get<double>(), path.c_str());
      std::fflush(stdout);
    }
  } catch (const kvtune::Error& e) {
    std::cerr << "kvtune_study: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kvtune_study: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}

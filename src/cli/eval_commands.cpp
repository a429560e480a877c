// kvtune eval --model DIR [--banks A.h5,B.h5] [--data NAME|PATH]... [--json OUT.json]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/path_checks.h"
#include "eval/evaluate.h"
#include "train/recipe_io.h"
#include "train/run_model.h"

namespace kvtune::cli {
namespace {

namespace fs = std::filesystem;

struct EvalArgs {
  std::string model, json;
  std::vector<std::string> banks, data;
  int64_t batches = 20, batch_size = 16;
  double held_out_fraction = -1;
  int64_t split_salt = -1, seq_len = -1, max_entries = -1, train_templates = -1;
};

void run_eval(const EvalArgs& a) {
  auto loaded = load_run_model(a.model);
  for (const auto& bank : a.banks) attach_bank_file(loaded.model, bank);

  EvalRequest request;
  const auto recipe = run_recipe(a.model);
  if (recipe) request.data = recipe->data;
  request.sets = a.data;
  if (request.sets.empty() && recipe) {
    if (!recipe->data.domain.empty()) request.sets.push_back(recipe->data.domain);
    for (const auto& g : recipe->data.general) request.sets.push_back(g);
  }
  if (a.held_out_fraction >= 0) request.data.held_out_fraction = a.held_out_fraction;
  if (a.split_salt >= 0) request.data.split_salt = static_cast<uint64_t>(a.split_salt);
  if (a.seq_len >= 0) request.data.seq_len = a.seq_len;
  if (a.max_entries >= 0) request.data.max_entries = a.max_entries;
  if (a.train_templates >= 0) request.data.train_templates = a.train_templates;
  request.batches = a.batches;
  request.batch_size = a.batch_size;

  const auto sets = evaluate_sets(loaded.model, *loaded.tokenizer, request);
  std::printf("%-16s %9s %9s %9s %9s %9s\n", "set", "accuracy", "loss", "bits/byte", "words",
              "tokens");
  for (const auto& [name, m] : sets.items()) {
    std::printf("%-16s %8.2f%% %9.4f %9.4f %8.2f%% %9lld", name.c_str(),
                100 * m["token_accuracy"].get<double>(), m["loss"].get<double>(),
                m["bits_per_byte"].get<double>(), 100 * m["word_accuracy"].get<double>(),
                static_cast<long long>(m["tokens"].get<int64_t>()));
    std::printf("\n");
    if (m.contains("exact_match")) {
      std::printf("  recall in held-out wordings %6.2f%% (control %.2f%%, chance %.2f%%)\n",
                  100 * m["wording_recall"].get<double>(),
                  100 * m["wording_recall_control"].get<double>(),
                  100 * m["wording_chance"].get<double>());
      std::printf("  question answering          %6.2f%% (control %.2f%%, chance %.2f%%)\n",
                  100 * m["exact_match"].get<double>(),
                  100 * m["exact_match_control"].get<double>(), 100 * m["chance"].get<double>());
      std::printf("  recall in trained wordings  %6.2f%% (control %.2f%%)\n",
                  100 * m["verbatim_recall"].get<double>(),
                  100 * m["verbatim_recall_control"].get<double>());
    }
  }
  if (!a.json.empty()) {
    nlohmann::json out = {{"model", a.model},
                          {"banks", a.banks},
                          {"data",
                           {{"held_out_fraction", request.data.held_out_fraction},
                            {"split_salt", request.data.split_salt},
                            {"seq_len", request.data.seq_len},
                            {"max_entries", request.data.max_entries},
                            {"train_templates", request.data.train_templates}}},
                          {"batches", request.batches},
                          {"batch_size", request.batch_size},
                          {"sets", sets}};
    write_file_atomic(a.json, out.dump(2) + "\n");
    std::printf("wrote %s\n", a.json.c_str());
  }
}

}  // namespace

std::optional<Recipe> run_recipe(const std::string& model_dir) {
  const auto path = fs::absolute(model_dir).parent_path() / "recipe.yaml";
  if (!is_file(path)) return std::nullopt;
  try {
    return load_recipe(path.string(), {}, default_configs_dir(path.string()));
  } catch (const Error& e) {
    std::cerr << "kvtune: warning: " << path.string() << " is not readable as a recipe ("
              << e.what() << "): using the default split\n";
    return std::nullopt;
  }
}

void add_eval_commands(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* c = app.add_subcommand(
      "eval", "Evaluate a model (and attached banks) on held-out sets: accuracy, loss, bits/byte");
  c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
  c->add_option("--banks", a->banks, "Bank files to attach, comma-separated (A.h5,B.h5)")
      ->delimiter(',');
  c->add_option("--data", a->data,
                "Held-out set: a corpus name (foldoc, wn, elements-facts, eng-deu-facts) or a "
                ".txt/.jsonl path; "
                "repeatable (default: the run's domain and general sets)");
  c->add_option("--json", a->json, "Write the metrics as JSON here (docs/eval.md)");
  c->add_option("--batches", a->batches, "Evaluation batches per set (0: the whole set)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--batch-size", a->batch_size, "Sequences per batch")->check(CLI::PositiveNumber);
  c->add_option("--held-out-fraction", a->held_out_fraction,
                "Split: fraction held out (default: the run's recipe, else 0.1)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--split-salt", a->split_salt, "Split: salt (default: the run's recipe, else 0)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--seq-len", a->seq_len,
                "Tokens per sequence (default: the run's recipe, else 128)")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-entries", a->max_entries,
                "Entries kept per corpus, 0 = all (default: the run's recipe, else 0)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--train-templates", a->train_templates,
                "Fact sets: statement templates that were trained per relation and direction; "
                "the rest are the held-out wordings (default: the run's recipe, else 3)")
      ->check(CLI::PositiveNumber);
  c->callback([a] { run_eval(*a); });
}

}  // namespace kvtune::cli

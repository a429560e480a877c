// kvtune facts statements [--set NAME] [--group control|trained] [--out FILE]
// kvtune facts recall --model DIR [--set NAME] [--banks A.h5,B.h5] [--group control|trained]
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "data/corpus.h"
#include "eval/facts.h"
#include "train/run_model.h"

namespace kvtune::cli {
namespace {

struct FactsArgs {
  std::string set = kElementsFacts, group = "control", out, model;
  std::vector<std::string> banks;
  DataConfig data;
  int64_t samples = 4;
};

bool is_control(const std::string& group) {
  KVT_CHECK(group == "control" || group == "trained", "unknown group '", group,
            "': choose control (held-out subjects) or trained (trained-fact subjects)");
  return group == "control";
}

void add_split_options(CLI::App* c, FactsArgs& a) {
  c->add_option("--set", a.set, "Fact set: elements-facts (default) or eng-deu-facts");
  c->add_option("--group", a.group,
                "control: the held-out subjects (default); trained: the trained-fact subjects");
  c->add_option("--held-out-fraction", a.data.held_out_fraction,
                "Split: fraction of subjects held out (default 0.1, as the recipes)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--split-salt", a.data.split_salt, "Split: salt (default 0)");
  c->add_option("--train-templates", a.data.train_templates,
                "Statement templates trained per relation and direction (default 3)")
      ->check(CLI::PositiveNumber);
}

FactPrompts prompts_of(const FactsArgs& a) {
  KVT_CHECK(is_fact_set(a.set), "--set: '", a.set, "' is not a fact set: use elements-facts or ",
            "eng-deu-facts");
  check_corpus_available(a.set, "--set");
  check_train_templates(fact_set_templates(a.set), a.data.train_templates, "--train-templates");
  return fact_prompts_for(a.set, a.data);
}

void run_statements(const FactsArgs& a) {
  const bool control = is_control(a.group);
  const FactPrompts prompts = prompts_of(a);
  const auto& group = control ? prompts.control : prompts.trained;
  std::ostringstream text;
  // The statements in the trained wordings: the text a recipe would have trained on.
  for (const auto& p : group.trained_wordings) text << p.prompt << p.answer << "\n\n";
  if (a.out.empty()) {
    std::cout << text.str();
  } else {
    write_file_atomic(a.out, text.str());
    std::cerr << "wrote " << a.out << "\n";
  }
}

void print_exact_match(const char* what, const ExactMatch& m, int64_t samples) {
  std::printf("%-28s exact match %6.2f%% (%lld of %lld)", what, 100 * m.accuracy,
              static_cast<long long>(m.correct), static_cast<long long>(m.total));
  if (m.chance > 0) std::printf(", chance %.2f%%", 100 * m.chance);
  std::printf("\n");
  for (int64_t i = 0; i < samples && i < static_cast<int64_t>(m.answers.size()); ++i) {
    const auto& ans = m.answers[i];
    std::printf("  %s ->%s  (expected%s)\n", ans.prompt->prompt.c_str(), ans.predicted.c_str(),
                ans.prompt->answer.c_str());
  }
}

void run_recall(const FactsArgs& a) {
  const bool control = is_control(a.group);
  const FactPrompts prompts = prompts_of(a);
  auto loaded = load_run_model(a.model);
  for (const auto& bank : a.banks) attach_bank_file(loaded.model, bank);
  const auto scores = score_facts(loaded.model, *loaded.tokenizer, prompts);
  const auto& g = control ? scores.control : scores.trained;
  std::printf("%s, %s group (held-out fraction %g, salt %llu, %lld trained templates)\n",
              a.set.c_str(), a.group.c_str(), a.data.held_out_fraction,
              static_cast<unsigned long long>(a.data.split_salt),
              static_cast<long long>(a.data.train_templates));
  print_exact_match("statements, held-out wordings", g.heldout_wordings, a.samples);
  print_exact_match("questions", g.questions, a.samples);
  print_exact_match("statements, trained wordings", g.trained_wordings, a.samples);
}

}  // namespace

void add_facts_commands(CLI::App& app) {
  auto* facts = app.add_subcommand(
      "facts",
      "Fact sets (elements-facts, eng-deu-facts): the statements of a group of subjects, and "
      "how well a model recalls them");
  facts->require_subcommand(1);
  {
    auto a = std::make_shared<FactsArgs>();
    auto* c = facts->add_subcommand(
        "statements",
        "Print (or write) a group's statements, one paragraph each: a text for "
        "`kvtune remember`");
    add_split_options(c, *a);
    c->add_option("--out", a->out, "Write them to this file instead of printing");
    c->callback([a] { run_statements(*a); });
  }
  {
    auto a = std::make_shared<FactsArgs>();
    auto* c = facts->add_subcommand(
        "recall",
        "Exact match of a group's statements in held-out wordings, its questions, and its "
        "statements in the trained wordings (\"The symbol of Iron is\" -> \" Fe.\")");
    c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
    c->add_option("--banks", a->banks, "Bank files to attach, comma-separated (A.h5,B.h5)")
        ->delimiter(',');
    add_split_options(c, *a);
    c->add_option("--samples", a->samples, "Answers shown per kind")->check(CLI::NonNegativeNumber);
    c->callback([a] { run_recall(*a); });
  }
}

}  // namespace kvtune::cli

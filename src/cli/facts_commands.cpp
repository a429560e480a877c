// kvtune facts statements [--group control|trained] [--out FILE]
// kvtune facts recall --model DIR [--banks A.h5,B.h5] [--group control|trained]
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "eval/facts.h"
#include "train/run_model.h"

namespace kvtune::cli {
namespace {

struct FactsArgs {
  std::string group = "control", out, model;
  std::vector<std::string> banks;
  DataConfig data;
  int64_t samples = 4;
};

bool is_control(const std::string& group) {
  KVT_CHECK(group == "control" || group == "trained", "unknown group '", group,
            "': choose control (held-out elements) or trained (trained-fact elements)");
  return group == "control";
}

void add_split_options(CLI::App* c, FactsArgs& a) {
  c->add_option("--group", a.group,
                "control: the held-out elements (default); trained: the trained-fact elements");
  c->add_option("--held-out-fraction", a.data.held_out_fraction,
                "Split: fraction of elements held out (default 0.1, as recipes/elements-facts)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--split-salt", a.data.split_salt, "Split: salt (default 0)");
}

void run_statements(const FactsArgs& a) {
  std::ostringstream text;
  for (const auto& s : element_group_statements(a.data, is_control(a.group))) {
    text << s << "\n\n";
  }
  if (a.out.empty()) {
    std::cout << text.str();
  } else {
    write_file_atomic(a.out, text.str());
    std::cerr << "wrote " << a.out << "\n";
  }
}

void print_exact_match(const char* what, const ExactMatch& m, int64_t samples) {
  std::printf("%-24s exact match %6.2f%% (%lld of %lld)", what, 100 * m.accuracy,
              static_cast<long long>(m.correct), static_cast<long long>(m.total));
  if (m.chance > 0) std::printf(", chance %.2f%%", 100 * m.chance);
  std::printf("\n");
  for (int64_t i = 0; i < samples && i < static_cast<int64_t>(m.answers.size()); ++i) {
    const auto& ans = m.answers[i];
    std::printf("  %s ->%s  (expected%s)\n", ans.question->prompt.c_str(), ans.predicted.c_str(),
                ans.question->answer.c_str());
  }
}

void run_recall(const FactsArgs& a) {
  const bool control = is_control(a.group);
  auto loaded = load_run_model(a.model);
  for (const auto& bank : a.banks) attach_bank_file(loaded.model, bank);
  const auto sets = element_fact_questions(a.data);
  const auto& questions = control ? sets.control : sets.trained;
  const auto completions = statement_completions(element_group_statements(a.data, control));
  const auto& tok = *loaded.tokenizer;
  const auto asked = exact_match(loaded.model, tok, questions, sets.chance_by_kind);
  const auto verbatim = exact_match(loaded.model, tok, completions, sets.chance_by_kind);
  std::printf("%s group (held-out fraction %g, salt %llu)\n", a.group.c_str(),
              a.data.held_out_fraction, static_cast<unsigned long long>(a.data.split_salt));
  print_exact_match("questions (new words)", asked, a.samples);
  print_exact_match("statements (verbatim)", verbatim, a.samples);
}

}  // namespace

void add_facts_commands(CLI::App& app) {
  auto* facts = app.add_subcommand(
      "facts",
      "Element facts: the statements of a group of elements, and how well a model "
      "recalls them");
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
        "Exact match of a group's questions (worded anew) and of its statements "
        "completed verbatim (\"The symbol of Iron is\" -> \" Fe.\")");
    c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
    c->add_option("--banks", a->banks, "Bank files to attach, comma-separated (A.h5,B.h5)")
        ->delimiter(',');
    add_split_options(c, *a);
    c->add_option("--samples", a->samples, "Answers shown per kind")->check(CLI::NonNegativeNumber);
    c->callback([a] { run_recall(*a); });
  }
}

}  // namespace kvtune::cli

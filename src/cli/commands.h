// Subcommands of the kvtune program: each parses options and calls the library.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "train/recipe.h"

namespace kvtune::cli {

// configs/ beside the recipe's folder (recipes/x.yaml -> configs/), else the source tree's.
std::string default_configs_dir(const std::string& recipe);

// The recipe of the run a model folder belongs to (runs/NAME/model -> runs/NAME/recipe.yaml), so
// that evaluation and usage counting use the same split as training; nullopt for a model folder
// outside a run (or an unreadable recipe, with a warning).
std::optional<Recipe> run_recipe(const std::string& model_dir);

// The program's own argv, as main received it (the --nproc launcher starts its ranks with it).
void set_program_args(int argc, char** argv);
const std::vector<std::string>& program_args();

void add_bank_commands(CLI::App& app);
// kvtune bank export | merge | compact, under the `bank` subcommand.
void add_bank_tool_commands(CLI::App& bank);
void add_train_commands(CLI::App& app);
void add_eval_commands(CLI::App& app);
void add_compare_commands(CLI::App& app);
void add_memory_commands(CLI::App& app);
void add_facts_commands(CLI::App& app);

}  // namespace kvtune::cli

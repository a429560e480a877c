// Subcommands of the kvtune program: each parses options and calls the library.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace kvtune::cli {

// configs/ beside the recipe's folder (recipes/x.yaml -> configs/), else the source tree's.
std::string default_configs_dir(const std::string& recipe);

void add_bank_commands(CLI::App& app);
void add_train_commands(CLI::App& app);
void add_eval_commands(CLI::App& app);
void add_compare_commands(CLI::App& app);
void add_memory_commands(CLI::App& app);
void add_facts_commands(CLI::App& app);

}  // namespace kvtune::cli

// Subcommands of the kvtune program: each parses options and calls the library.
#pragma once

#include <CLI/CLI.hpp>

namespace kvtune::cli {

void add_bank_commands(CLI::App& app);
void add_train_commands(CLI::App& app);
void add_eval_commands(CLI::App& app);
void add_compare_commands(CLI::App& app);

}  // namespace kvtune::cli

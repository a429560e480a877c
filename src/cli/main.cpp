// kvtune: fine-tune models through kNN attention over key/value memory banks.
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/check.h"
#include "common/resources.h"
#include "common/threads.h"

int main(int argc, char** argv) {
  CLI::App app{"kvtune: fine-tune models through kNN attention over key/value memory banks"};
  app.set_version_flag("--version", std::string("kvtune ") + KVTUNE_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads for libtorch and faiss (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.require_subcommand(1);
  kvtune::cli::set_program_args(argc, argv);
  app.parse_complete_callback([&] { kvtune::set_num_threads(threads); });
  kvtune::cli::add_bank_commands(app);
  kvtune::cli::add_train_commands(app);
  kvtune::cli::add_eval_commands(app);
  kvtune::cli::add_compare_commands(app);
  kvtune::cli::add_memory_commands(app);
  kvtune::cli::add_facts_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kvtune::Error& e) {
    std::cerr << "kvtune: error: " << e.what() << "\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the system refused (too long, not a folder, no permission) that a reader did not
    // check first: the system's message names the path and the reason.
    std::cerr << "kvtune: error: " << e.what() << ": check the path\n";
    return 1;
  } catch (const std::exception& e) {
    if (const auto oom = kvtune::out_of_memory_message(e); !oom.empty()) {
      std::cerr << "kvtune: error: " << oom << "\n";
      return 1;
    }
    std::cerr << "kvtune: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}

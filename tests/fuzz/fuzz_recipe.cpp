// The recipe reader (train/recipe_io.h), as `kvtune finetune RECIPE --set ...` drives it: the
// input up to its first NUL byte is the recipe file; each line after it is one `--set`. Named
// configs come from the project's configs/ (KVTUNE_FUZZ_CONFIGS). A recipe that loads and
// validates must round-trip: the resolved recipe.yaml a run folder keeps reads back to the same
// recipe.
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "train/recipe_io.h"

namespace {

std::string scratch_file(const char* name) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("kvtune-fuzz-recipe-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  std::vector<std::string> sets;
  if (nul != std::string::npos) {
    size_t start = nul + 1;
    while (start <= input.size() && sets.size() < 8) {
      size_t end = input.find('\n', start);
      if (end == std::string::npos) end = input.size();
      sets.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  const std::string path = scratch_file("fuzz.yaml");
  write_text(path, input.substr(0, nul));
  kvtune::Recipe recipe;
  try {
    recipe = kvtune::load_recipe(path, sets, KVTUNE_FUZZ_CONFIGS);
    kvtune::validate_recipe(recipe, path);
  } catch (const kvtune::Error&) {
    return 0;
  } catch (const YAML::Exception&) {
    __builtin_trap();  // would reach the user as an internal error
  }
  // Round trip of the resolved recipe (what save_resolved_recipe writes into a run folder).
  const std::string resolved = YAML::Dump(kvtune::recipe_to_yaml(recipe));
  const std::string again_path = scratch_file("fuzz.yaml");
  write_text(again_path, resolved);
  try {
    const kvtune::Recipe again = kvtune::load_recipe(again_path, {}, KVTUNE_FUZZ_CONFIGS);
    if (YAML::Dump(kvtune::recipe_to_yaml(again)) != resolved) __builtin_trap();
  } catch (...) {
    __builtin_trap();  // a run folder's own recipe.yaml that does not read back
  }
  return 0;
}

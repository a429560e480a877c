// Helpers for the recipe tests: a scratch folder with a pretrained-run stand-in and a corpus,
// so that validation tests need no installed dictionaries (those that do use
// KVTUNE_REQUIRE_DICTD of test_util.h).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "data/corpus.h"
#include "test_util.h"
#include "train/recipe_io.h"

namespace kvtune::test {

inline std::string configs_dir() {
  return source_dir() + "/configs";
}

inline std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  EXPECT_TRUE(f.good()) << path;
  return path;
}

// A folder holding base/model/config.yaml (what validation asks of a pretrained run) and two .txt
// corpora, and a valid finetune recipe over them.
class RecipeScratch {
 public:
  RecipeScratch() {
    std::filesystem::create_directories(dir_.path() / "base" / "model");
    write_text(dir_.file("base/model/config.yaml"), "");
    write_text(dir_.file("general.txt"), "General text.\n\nMore general text.\n");
    write_text(dir_.file("domain.txt"), "Domain text.\n\nMore domain text.\n");
  }
  std::string base() const { return dir_.file("base"); }
  std::string file(const std::string& name) const { return dir_.file(name); }

  // A valid finetune recipe plus `extra` lines (top-level YAML appended at the end).
  std::string finetune_yaml() const {
    return "mode: finetune\nmethod: memory\nbase: " + base() + "\ndata:\n  general: [" +
           file("general.txt") + "]\n  domain: " + file("domain.txt") + "\n";
  }
  std::string write_recipe(const std::string& name, const std::string& yaml) const {
    return write_text(dir_.file(name), yaml);
  }
  Recipe load(const std::string& yaml, const std::vector<std::string>& sets = {},
              const std::string& name = "r.yaml") const {
    return load_recipe(write_recipe(name, yaml), sets, configs_dir());
  }
  // Loads and validates a finetune recipe with the given --set overrides.
  void load_and_validate(const std::vector<std::string>& sets) const {
    const std::string path = write_recipe("ft.yaml", finetune_yaml());
    validate_recipe(load_recipe(path, sets, configs_dir()), path);
  }

 private:
  TempDir dir_;
};

// Runs `fn`, expects a kvtune::Error, returns its message ("" and a failure when none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ::kvtune::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a kvtune::Error";
  return "";
}

}  // namespace kvtune::test

// Recipes from YAML, in layers: the struct's defaults, then the recipe file, then each
// `--set key.path=value`; checked strictly (unknown keys are errors), validated before any work
// starts, and saved resolved into the run folder so that a run can be reproduced from it.
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "model/model_config.h"
#include "train/recipe.h"

namespace kvtune {

// Where named configs live: configs/models/NAME.yaml, configs/index/NAME.yaml.
inline constexpr const char* kConfigsDir = "configs";

// Reads the recipe at `path` over the defaults, then applies each override in order
// ("train.steps=500", "data.general=[wn,foldoc]": a dotted path into the YAML tree and a YAML
// scalar or flow list). Every key is read strictly: unknown keys (from the file or a --set)
// and wrong types are kvtune::Errors naming the file or the --set and the dotted key. `name`
// defaults to the file's stem. Resolves `model` (+ `model_overrides`) into model_config and
// `domain_bank.index` (a name in configs_dir/index/, a path, or a map) into an IndexConfig.
// Does not validate: call validate_recipe.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& set_overrides,
                   const std::string& configs_dir = kConfigsDir);

// Checks everything a run needs before any work starts (see docs/recipes.md, "Validation"):
// names (mode, method, backward, key_init, ...), ranges, the base run folder, corpora on disk,
// sizes against the model. Throws kvtune::Error naming `where`, the key and the fix.
void validate_recipe(const Recipe& recipe, const std::string& where);

// The resolved recipe as YAML: every key, the model as `model` plus the full resolved model in
// `model_overrides`, the index inline. load_recipe of it gives an equal Recipe.
YAML::Node recipe_to_yaml(const Recipe& recipe);

// Writes recipe_to_yaml(recipe) to `path` atomically (the run folder's recipe.yaml).
void save_resolved_recipe(const Recipe& recipe, const std::string& path);

// configs_dir/models/MODEL.yaml (or MODEL itself when it is a path), with `overrides` (a map,
// or null for none) merged in key by key (maps merge, other values replace), parsed into a
// ModelConfig. `where` names the recipe, for messages.
ModelConfig resolve_model_config(const std::string& model, const YAML::Node& overrides,
                                 const std::string& configs_dir, const std::string& where);

// Merges map `overrides` into map `base` in place: nested maps merge, anything else replaces.
void merge_yaml(YAML::Node base, const YAML::Node& overrides);

// The model config as YAML (the model's own to_yaml once model/model_config_yaml.h lands).
YAML::Node model_config_yaml(const ModelConfig& config);

// One `--set key.path=value`, parsed.
struct SetOverride {
  std::string text;               // as given, for messages
  std::vector<std::string> keys;  // "train.steps" -> {"train", "steps"}
  YAML::Node value;
};
// Throws kvtune::Error for a missing '=', an empty key or path segment, or a value that opens
// a flow list or map ('[' or '{') but is not valid YAML.
SetOverride parse_set_override(const std::string& text);

// Accepted names, in the order messages list them.
const std::vector<std::string>& recipe_modes();    // pretrain, finetune
const std::vector<std::string>& recipe_methods();  // memory, full, lora
const std::vector<std::string>& backward_modes();  // exact, sampled, dense

}  // namespace kvtune

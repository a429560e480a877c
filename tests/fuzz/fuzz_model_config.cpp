// The model-config reader (model/model_config_yaml.h: configs/models/*.yaml and a model
// folder's config.yaml). A config that reads must round-trip through the text written into a
// model folder.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>

#include "common/check.h"
#include "common/yaml_reader.h"
#include "model/model_config_yaml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kvtune::ModelConfig config;
  try {
    config =
        kvtune::model_config_from_yaml(kvtune::load_yaml_string(text, "fuzz.yaml"), "fuzz.yaml");
  } catch (const kvtune::Error&) {
    return 0;
  } catch (const YAML::Exception&) {
    __builtin_trap();  // would reach the user as an internal error
  }
  const std::string saved = kvtune::to_yaml_string(config);
  try {
    const auto again = kvtune::model_config_from_yaml(
        kvtune::load_yaml_string(saved, "config.yaml"), "config.yaml");
    if (kvtune::to_yaml_string(again) != saved) __builtin_trap();
  } catch (...) {
    __builtin_trap();  // a model folder's own config.yaml that does not read back
  }
  return 0;
}

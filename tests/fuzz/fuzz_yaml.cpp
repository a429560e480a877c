// The strict YAML loader (duplicate keys, several documents) and the index config reader on top
// of it. The recipe and model-config readers use the same loader and YamlReader; their own
// harnesses are fuzz_recipe and fuzz_model_config.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>

#include "common/check.h"
#include "common/yaml_reader.h"
#include "index/index_config_yaml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    YAML::Node node = kvtune::load_yaml_string(text, "fuzz.yaml");
    kvtune::YamlReader reader(node, "fuzz.yaml");
    const auto config = kvtune::index_config_from_yaml(reader);
    kvtune::validate(config, "fuzz.yaml", "index");
    (void)YAML::Dump(kvtune::to_yaml(config));
  } catch (const kvtune::Error&) {
  } catch (const YAML::Exception&) {
    // A YAML exception escaping the reader would reach the user as an internal error.
    __builtin_trap();
  }
  return 0;
}

// Helpers for the model tests: the shipped tiny config, cut down where a test needs speed.
#pragma once

#include <algorithm>
#include <string>

#include "model/model_config.h"
#include "model/model_config_yaml.h"
#include "test_util.h"

namespace kvtune::test {

inline std::string model_config_path(const std::string& name) {
  return source_dir() + "/configs/models/" + name + ".yaml";
}

// configs/models/tiny.yaml; `bank_size` > 0 shrinks the base bank (and k with it).
inline ModelConfig tiny_config(int64_t bank_size = 0) {
  ModelConfig c = load_model_config(model_config_path("tiny"));
  if (bank_size > 0) {
    c.memory.base_bank_size = bank_size;
    c.memory.attention.k = std::min<int64_t>(c.memory.attention.k, bank_size);
  }
  return c;
}

}  // namespace kvtune::test

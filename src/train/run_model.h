// A trained run's model: the model folder plus the domain banks fine-tuning wrote beside it.
#pragma once

#include <string>

#include "model/model_io.h"

namespace kvtune {

// "domain_<i>.h5" in a model folder: the trained domain bank of memory layer i.
std::string domain_bank_file(int64_t memory_layer);

// load_model(dir), then every domain bank found beside it attached after the base bank.
LoadedModel load_run_model(const std::string& model_dir);

}  // namespace kvtune

// A module's parameters and buffers in a file (model.pt): torch::save's nested-archive layout,
// so torch::load(module, path) reads it too, plus a format version. Loading checks every tensor's
// name, shape and dtype against the module instead of silently resizing it.
#pragma once

#include <string>

#include <torch/torch.h>

namespace kvtune {

inline constexpr int64_t kModuleStateFormatVersion = 1;

// Written atomically (temp file, then rename).
void save_module_state(const torch::nn::Module& module, const std::string& path);

// Copies the file's tensors into `module`'s parameters and buffers (no autograd history).
// A kvtune::Error names the file and the tensor when one is missing, extra, or has another shape
// or dtype (both shapes given): the file was written for a different config.
void load_module_state(torch::nn::Module& module, const std::string& path);

}  // namespace kvtune

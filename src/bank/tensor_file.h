// Plain HDF5 files of named 2-D tensors, for scripting (`kvtune bank query` reads /queries and
// writes /ids, /scores, /outputs).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace kvtune {

// Reads dataset `name` (float32/float64/int64, rank 1 or 2) into a CPU tensor of that dtype.
// Errors name the file and dataset.
torch::Tensor read_tensor(const std::string& path, const std::string& name);

// Writes the named tensors (float32, float64, int64; contiguous CPU) atomically.
void write_tensors(const std::string& path,
                   const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace kvtune

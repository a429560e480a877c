// A bank as the attention op sees it: key and value tensors plus the index that searches them.
#pragma once

#include <string>

#include <torch/torch.h>

#include "index/key_index.h"

namespace kvtune {

// Non-owning. Gradient flows to `keys` / `values` exactly when they require grad (a trainable
// bank); a frozen bank's tensors do not, and receive nothing.
struct BankView {
  torch::Tensor keys;               // [N, dk], unit rows, float32 or float64, contiguous
  torch::Tensor values;             // [N, dv], same dtype, contiguous
  const KeyIndex* index = nullptr;  // null: exact search over `keys` itself
  std::string name;                 // for error messages

  int64_t size() const { return keys.size(0); }
};

}  // namespace kvtune

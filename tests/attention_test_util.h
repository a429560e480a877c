// Helpers for the attention tests: random unit keys and banks of them, as BankViews.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"

namespace kvtune::test {

// n rows of width d, each of unit L2 norm (drawn in float64, then cast).
inline torch::Tensor unit_rows(int64_t n, int64_t d, torch::ScalarType dtype) {
  auto x = torch::randn({n, d}, torch::kFloat64);
  return (x / x.norm(2, 1, true)).to(dtype).contiguous();
}

// Banks held as tensors: unit keys, values N(0, 1).
struct Banks {
  std::vector<torch::Tensor> keys, values;
  std::vector<BankView> views() const {
    std::vector<BankView> v;
    for (size_t i = 0; i < keys.size(); ++i) v.push_back({keys[i], values[i], nullptr, ""});
    return v;
  }
  // Every bank's rows, in bank order, in float64.
  torch::Tensor all_keys() const { return torch::cat(keys).to(torch::kFloat64); }
  torch::Tensor all_values() const { return torch::cat(values).to(torch::kFloat64); }
};

// One bank per size, drawn from torch's global generator.
inline Banks make_banks(const std::vector<int64_t>& sizes, int64_t dk, int64_t dv,
                        torch::ScalarType dtype) {
  Banks b;
  for (int64_t n : sizes) {
    b.keys.push_back(unit_rows(n, dk, dtype));
    b.values.push_back(torch::randn({n, dv}, torch::kFloat64).to(dtype).contiguous());
  }
  return b;
}

}  // namespace kvtune::test

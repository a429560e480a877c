// Shared test helpers: seeds printed, temp folders, tolerances declared once per dtype.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kvtune::test {

// Relative tolerances, declared once (CTranslate2 style).
inline double rel_tol(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64:
      return 1e-6;
    case torch::kFloat32:
      return 1e-5;
    case torch::kBFloat16:
      return 4e-2;
    case torch::kFloat16:
      return 1e-2;
    default:
      return 0.0;
  }
}

// max |a-b| / max(max|b|, tiny)
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  auto scale = b.to(torch::kFloat64).abs().max().item<double>();
  return diff / std::max(scale, 1e-30);
}

// A fresh seed per run unless KVTUNE_TEST_SEED is set; always printed so a failure reproduces.
inline uint64_t fresh_seed() {
  static uint64_t base = [] {
    if (const char* s = std::getenv("KVTUNE_TEST_SEED")) {
      return static_cast<uint64_t>(std::stoull(s));
    }
    return static_cast<uint64_t>(std::random_device{}());
  }();
  static uint64_t counter = 0;
  uint64_t seed = base + 7919 * counter++;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::cout << "[ seed     ] " << seed << " (set KVTUNE_TEST_SEED=" << base << " to reproduce)\n";
  return seed;
}

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    auto base = std::filesystem::temp_directory_path();
    std::mt19937_64 rng(std::random_device{}());
    path_ = base / ("kvtune_test_" + std::to_string(rng()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The least-squares slope of y against x (at least two distinct x).
inline double least_squares_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

inline std::string source_dir() {
  return KVTUNE_SOURCE_DIR;
}

}  // namespace kvtune::test

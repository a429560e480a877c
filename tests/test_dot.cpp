// kernels::dot_f32 against float64 (accuracy) and against a scalar loop over the same 16 partial
// sums (the same bits, whichever instruction set the loader picked).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/dot.h"

namespace kvtune {
namespace {

float sixteen_lanes(const float* a, const float* b, int64_t d) {
  float part[16] = {};
  for (int64_t i = 0; i < d; ++i) {
    const float p = a[i] * b[i];  // rounded to float before the add: no fused multiply-add
    part[i % 16] = part[i % 16] + p;
  }
  float s = 0;
  for (int j = 0; j < 16; ++j) s += part[j];
  return s;
}

TEST(Dot, MatchesFloat64AndTheScalarOrderExactly) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  for (const int64_t d : {1, 7, 16, 17, 64, 100, 1024}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> a(d), b(d);
      for (auto& x : a) x = normal(gen);
      for (auto& x : b) x = normal(gen);
      double exact = 0, scale = 0;
      for (int64_t i = 0; i < d; ++i) {
        exact += static_cast<double>(a[i]) * b[i];
        scale += std::abs(static_cast<double>(a[i]) * b[i]);
      }
      const float got = kernels::dot_f32(a.data(), b.data(), d);
      EXPECT_NEAR(got, exact, 1e-6 * scale + 1e-30) << "d " << d;
      EXPECT_EQ(got, sixteen_lanes(a.data(), b.data(), d)) << "d " << d;
    }
  }
  EXPECT_EQ(kernels::dot_f32(nullptr, nullptr, 0), 0.0f);
}

}  // namespace
}  // namespace kvtune

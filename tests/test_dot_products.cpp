// kernels::dot_products_f32 against float64 products, for shapes with tiles cut at every edge
// (m, n not multiples of 4; d below, at and between multiples of 16), and the property the IVF
// search relies on: a product's value depends on its two rows only, not on the shape of the call
// or the row's place in it (bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/dot_products.h"

namespace kvtune {
namespace {

std::vector<float> normal_rows(int64_t rows, int64_t d, std::mt19937_64& gen) {
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(rows * d));
  for (auto& v : x) v = normal(gen);
  return x;
}

TEST(DotProducts, EqualFloat64ProductsWithinFloat32Rounding) {
  std::mt19937_64 gen(5);
  for (const int64_t d : {1, 7, 16, 50, 64, 129}) {
    for (const int64_t m : {1, 3, 4, 9}) {
      for (const int64_t n : {1, 2, 5, 8, 37}) {
        const auto a = normal_rows(m, d, gen), b = normal_rows(n, d, gen);
        const int64_t ldo = n + 3;  // a stride wider than n: nothing is written past column n
        std::vector<float> out(static_cast<size_t>(m * ldo), -7.0f);
        kernels::dot_products_f32(a.data(), m, b.data(), n, d, out.data(), ldo);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < ldo; ++j) {
            const float got = out[i * ldo + j];
            if (j >= n) {
              ASSERT_EQ(got, -7.0f) << "written past the row: i " << i << " j " << j;
              continue;
            }
            double exact = 0, magnitude = 0;
            for (int64_t t = 0; t < d; ++t) {
              const double p = static_cast<double>(a[i * d + t]) * b[j * d + t];
              exact += p;
              magnitude += std::abs(p);
            }
            // Any order of d float32 roundings: |error| <= d u sum |a_t b_t|, u = 2^-24.
            const double bound = static_cast<double>(d) * 0x1.0p-24 * magnitude * 1.01 + 1e-30;
            ASSERT_LE(std::abs(got - exact), bound)
                << "d " << d << " m " << m << " n " << n << " i " << i << " j " << j;
          }
        }
      }
    }
  }
}

TEST(DotProducts, AValueDependsOnItsRowsOnly) {
  std::mt19937_64 gen(6);
  const int64_t m = 11, n = 27;
  for (const int64_t d : {16, 64, 70}) {
    const auto a = normal_rows(m, d, gen), b = normal_rows(n, d, gen);
    std::vector<float> all(static_cast<size_t>(m * n));
    kernels::dot_products_f32(a.data(), m, b.data(), n, d, all.data(), n);
    // Every row alone, against every window of columns that starts at an odd offset.
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j0 = 0; j0 < n; j0 += 3) {
        const int64_t len = std::min<int64_t>(5, n - j0);
        std::vector<float> part(static_cast<size_t>(len));
        kernels::dot_products_f32(a.data() + i * d, 1, b.data() + j0 * d, len, d, part.data(), len);
        for (int64_t j = 0; j < len; ++j) {
          ASSERT_EQ(part[j], all[i * n + j0 + j]) << "d " << d << " i " << i << " j " << j0 + j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvtune

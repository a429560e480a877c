// kernels::log_n and log1p_n against std::log and std::log1p, in ulps of the reference, over the
// inputs the samplers give them (open uniforms, and -V p for V uniform and p a probability) and
// over wide ranges, with lengths that leave vector tails. glibc documents its vector math at
// 4 ulp at most; this build measured 1.0.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/vector_math.h"

namespace kvtune {
namespace {

constexpr double kMaxUlp = 4;

double ulps(double got, double want) {
  if (got == want) return 0;
  const double ulp = std::nextafter(std::abs(want), INFINITY) - std::abs(want);
  return std::abs(got - want) / ulp;
}

TEST(VectorMath, LogAndLog1pWithinFourUlpOfTheScalarFunctions) {
  std::mt19937_64 gen(11);
  auto uniform = [&gen] { return (static_cast<double>(gen() >> 11) + 0.5) * 0x1.0p-53; };
  for (const int64_t n : {0, 1, 3, 16, 17, 1000, 4099}) {
    std::vector<double> x(n), y(n), z(n);
    // log: open uniforms, then values spread over 600 binary orders of magnitude.
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& v : x) v = pass == 0 ? uniform() : std::exp2(600 * uniform() - 300);
      kernels::log_n(x.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_LE(ulps(y[i], std::log(x[i])), kMaxUlp) << "log(" << x[i] << ") = " << y[i];
    }
    // log1p: -V p with p over 40 orders of magnitude (tiny arguments keep their digits), then
    // arguments up to 1e10.
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& v : x)
        v = pass == 0 ? -uniform() * std::pow(10.0, -40 * uniform()) : 1e10 * uniform();
      kernels::log1p_n(x.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_LE(ulps(y[i], std::log1p(x[i])), kMaxUlp) << "log1p(" << x[i] << ") = " << y[i];
    }
    // In place.
    for (auto& v : x) v = uniform();
    z = x;
    kernels::log_n(z.data(), z.data(), n);
    kernels::log_n(x.data(), y.data(), n);
    EXPECT_EQ(z, y);
  }
}

}  // namespace
}  // namespace kvtune

#include "kernels/dot.h"

namespace kvtune::kernels {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
float dot_f32(const float* a, const float* b, int64_t d) {
  float s = 0;
  // 16 partial sums in the order SIMD lanes take them: the same result on every code path.
  float part[16] = {};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
#pragma omp simd
    for (int j = 0; j < 16; ++j) part[j] += a[i + j] * b[i + j];
  }
  for (; i < d; ++i) part[i % 16] += a[i] * b[i];
  for (int j = 0; j < 16; ++j) s += part[j];
  return s;
}

}  // namespace kvtune::kernels

#include "kernels/vector_math.h"

#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(__CUDACC__)
// glibc's vector variants of log and log1p (libmvec, linked through libm's linker script). Its
// <bits/math-vector.h> declares them only under -ffast-math; declaring them here lets GCC
// vectorize these loops without the rest of -ffast-math.
extern "C" {
__attribute__((simd("notinbranch"))) double log(double);
__attribute__((simd("notinbranch"))) double log1p(double);
}
#define KVTUNE_VECTOR_MATH_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVTUNE_VECTOR_MATH_CLONES
#endif

namespace kvtune::kernels {

KVTUNE_VECTOR_MATH_CLONES
void log_n(const double* x, double* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = ::log(x[i]);
}

KVTUNE_VECTOR_MATH_CLONES
void log1p_n(const double* x, double* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = ::log1p(x[i]);
}

}  // namespace kvtune::kernels

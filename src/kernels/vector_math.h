// Logarithms of many doubles at once, for the samplers' random numbers (geometric skips and
// truncated Gumbels, which need one or two logarithms per key they look at). On x86-64 with
// glibc and GCC the loops call glibc's vector math library (libmvec: 2, 4 or 8 lanes for
// SSE2, AVX2 or AVX-512, picked by the loader through function multi-versioning): 1.0 ulp from
// std::log and std::log1p when measured here, held to glibc's documented 4 ulp by
// tests/test_vector_math.cpp;
// elsewhere they are plain loops over std::log and std::log1p. The last bits may differ
// between the two, and between vector units.
#pragma once

#include <cstdint>

namespace kvtune::kernels {

// y[i] = log(x[i]) for i < n; x[i] > 0 and finite. y may equal x.
void log_n(const double* x, double* y, int64_t n);

// y[i] = log1p(x[i]) for i < n; x[i] > -1 and finite. y may equal x.
void log1p_n(const double* x, double* y, int64_t n);

}  // namespace kvtune::kernels

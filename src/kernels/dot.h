// The inner product of two float32 vectors, in float32, with the widest SIMD the CPU has: the
// build targets baseline x86-64, so the function is compiled for AVX-512, AVX2 and the baseline,
// and the loader picks one (GCC function multi-versioning). Debian's faiss is built without AVX2,
// and its fvec_inner_product is then a scalar loop.
#pragma once

#include <cstdint>

namespace kvtune::kernels {

float dot_f32(const float* a, const float* b, int64_t d);

}  // namespace kvtune::kernels

// The inner products of m rows against n rows, float32, both row-major with d columns:
// out[i * ldo + j] = a_i . b_j. It exists for the IVF search, which scores each inverted list
// against the few queries that probe it (tens of rows against thousands): there a BLAS call spends
// more time packing the list than multiplying it, and this kernel reads both operands where they
// lie, in register tiles of 4 x 4 rows.
//
// Every product is computed by the same instruction sequence wherever it falls in the tile grid,
// so a value depends only on its two rows, not on m, n or the threads. The sequence depends on
// the instruction set, and it is not kernels::dot_f32's.
#pragma once

#include <cstdint>

namespace kvtune::kernels {

// True where this CPU runs the tiled kernel (AVX-512F). Elsewhere dot_products_f32 computes each
// product with kernels::dot_f32, correct but no faster than a loop, and callers with a better
// alternative (a BLAS product) should use it.
bool dot_products_tiled();

void dot_products_f32(const float* a, int64_t m, const float* b, int64_t n, int64_t d, float* out,
                      int64_t ldo);

}  // namespace kvtune::kernels

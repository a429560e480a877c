#include "kernels/dot_products.h"

#include "kernels/dot.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define KVTUNE_DOT_PRODUCTS_AVX512 1
#include <immintrin.h>
// GCC 12's _mm512_undefined_ps (the merge source of unmasked shuffles) reads itself on purpose;
// -Wmaybe-uninitialized reports it wherever a shuffle is inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace kvtune::kernels {
namespace {

void dot_products_generic(const float* a, int64_t m, const float* b, int64_t n, int64_t d,
                          float* out, int64_t ldo) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) out[i * ldo + j] = dot_f32(a + i * d, b + j * d, d);
  }
}

#ifdef KVTUNE_DOT_PRODUCTS_AVX512

// Reduction of 16 accumulators to one vector whose lane v is the sum of v[v]'s 16 lanes. Each
// sum is the same tree for every v (lane e + lane e+2 in each 128-bit quarter, then the pairs,
// then the quarters 0+1 and 2+3, then the halves), so a product's value does not depend on its
// place in the tile.
__attribute__((target("avx512f"))) inline __m512 sum_lanes_16(const __m512* v) {
  __m512 x[8], y[4], z[2];
#pragma GCC unroll 16
  for (int i = 0; i < 8; ++i) {
    x[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {
    const __m512d p = _mm512_castps_pd(x[2 * i]), q = _mm512_castps_pd(x[2 * i + 1]);
    y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
  }
#pragma GCC unroll 16
  for (int i = 0; i < 2; ++i) {
    z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Rows past the end of a and b are computed as copies of the last row and not stored, so edge
// tiles take the same instruction sequence as inner ones.
__attribute__((target("avx512f"))) void dot_products_avx512(const float* a, int64_t m,
                                                            const float* b, int64_t n, int64_t d,
                                                            float* out, int64_t ldo) {
  const int64_t full = d / 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (d % 16)) - 1u);
  for (int64_t i0 = 0; i0 < m; i0 += 4) {
    const float* ar[4];
#pragma GCC unroll 16
    for (int r = 0; r < 4; ++r) ar[r] = a + (i0 + r < m ? i0 + r : m - 1) * d;
    for (int64_t j0 = 0; j0 < n; j0 += 4) {
      const float* br[4];
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) br[c] = b + (j0 + c < n ? j0 + c : n - 1) * d;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t s = 0; s < full; ++s) {
        __m512 bv[4];
#pragma GCC unroll 16
        for (int c = 0; c < 4; ++c) bv[c] = _mm512_loadu_ps(br[c] + s * 16);
#pragma GCC unroll 16
        for (int r = 0; r < 4; ++r) {
          const __m512 av = _mm512_loadu_ps(ar[r] + s * 16);
#pragma GCC unroll 16
          for (int c = 0; c < 4; ++c) acc[r * 4 + c] = _mm512_fmadd_ps(av, bv[c], acc[r * 4 + c]);
        }
      }
      if (tail != 0) {
        __m512 bv[4];
#pragma GCC unroll 16
        for (int c = 0; c < 4; ++c) bv[c] = _mm512_maskz_loadu_ps(tail, br[c] + full * 16);
#pragma GCC unroll 16
        for (int r = 0; r < 4; ++r) {
          const __m512 av = _mm512_maskz_loadu_ps(tail, ar[r] + full * 16);
#pragma GCC unroll 16
          for (int c = 0; c < 4; ++c) acc[r * 4 + c] = _mm512_fmadd_ps(av, bv[c], acc[r * 4 + c]);
        }
      }
      const __m512 sums = sum_lanes_16(acc);  // lane 4 r + c: row i0 + r, column j0 + c
      if (i0 + 4 <= m && j0 + 4 <= n) {
        float* o = out + i0 * ldo + j0;
        _mm_storeu_ps(o, _mm512_extractf32x4_ps(sums, 0));
        _mm_storeu_ps(o + ldo, _mm512_extractf32x4_ps(sums, 1));
        _mm_storeu_ps(o + 2 * ldo, _mm512_extractf32x4_ps(sums, 2));
        _mm_storeu_ps(o + 3 * ldo, _mm512_extractf32x4_ps(sums, 3));
        continue;
      }
      alignas(64) float part[16];
      _mm512_store_ps(part, sums);
      const int64_t rows = m - i0 < 4 ? m - i0 : 4, cols = n - j0 < 4 ? n - j0 : 4;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) out[(i0 + r) * ldo + j0 + c] = part[r * 4 + c];
      }
    }
  }
}

#endif

}  // namespace

bool dot_products_tiled() {
#ifdef KVTUNE_DOT_PRODUCTS_AVX512
  static const bool have = __builtin_cpu_supports("avx512f");
  return have;
#else
  return false;
#endif
}

void dot_products_f32(const float* a, int64_t m, const float* b, int64_t n, int64_t d, float* out,
                      int64_t ldo) {
  if (m <= 0 || n <= 0) return;
#ifdef KVTUNE_DOT_PRODUCTS_AVX512
  if (dot_products_tiled()) {
    dot_products_avx512(a, m, b, n, d, out, ldo);
    return;
  }
#endif
  dot_products_generic(a, m, b, n, d, out, ldo);
}

}  // namespace kvtune::kernels

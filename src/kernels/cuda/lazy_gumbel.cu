// (e) lazy Gumbel sampling on the GPU (docs/sampled-attention.md, The lazy Gumbel sampler), one
// warp per query row, a geometric process per lane over the tail.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace kvtune::kernels {
namespace {

using namespace cuda_detail;

constexpr int kGumbelWarps = 4;
// Philox blocks of a draw: top entry j uses block j; tail step i uses block kTailBlock0 + i.
constexpr uint32_t kTailBlock0 = 0x10000u;

// Shared memory per warp: q [dk] floats, then S sorted [k] and before [k] int64.
template <typename T>
__global__ void __launch_bounds__(kGumbelWarps* kWarp)
    lazy_gumbel_kernel(const float* __restrict__ q, int64_t R, int64_t dk, BankSet<T> banks,
                       int64_t n, const int64_t* __restrict__ top_ids,
                       const float* __restrict__ top_scores, int k, float scale, int64_t samples,
                       uint64_t seed, int64_t* out_ids, int64_t* tail_scored) {
  extern __shared__ unsigned char smem_raw[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  int64_t* sorted = reinterpret_cast<int64_t*>(smem_raw) + warp * 2 * k;
  int64_t* before = sorted + k;
  float* q_s =
      reinterpret_cast<float*>(reinterpret_cast<int64_t*>(smem_raw) + kGumbelWarps * 2 * k) +
      warp * dk;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kGumbelWarps + warp;
  if (r >= R) return;
  for (int64_t i = lane; i < dk; i += kWarp) q_s[i] = q[r * dk + i];

  // S: the valid top ids, sorted (insertion sort by lane 0; k <= 128), and s_min.
  const int64_t* ids = top_ids + r * k;
  const float* sc = top_scores + r * k;
  int ks = 0;
  double s_min = INFINITY;
  if (lane == 0) {
    for (int j = 0; j < k; ++j) {
      const int64_t id = ids[j];
      if (id < 0 || id >= n) continue;
      s_min = fmin(s_min, static_cast<double>(sc[j]));
      int p = ks++;
      while (p > 0 && sorted[p - 1] > id) {
        sorted[p] = sorted[p - 1];
        --p;
      }
      sorted[p] = id;
    }
    for (int j = 0; j < ks; ++j) before[j] = sorted[j] - j;
  }
  ks = __shfl_sync(kFullMask, ks, 0);
  s_min = __shfl_sync(kFullMask, s_min, 0);
  __syncwarp();
  const int64_t tail_n = n - ks;
  int64_t scored = 0;

  for (int64_t d = 0; d < samples; ++d) {
    const uint32_t draw = static_cast<uint32_t>(d);
    // Gumbels of the top entries; the warp's best s_j + g_j.
    double best_v = -INFINITY;
    int64_t best_id = -1;
    for (int j = lane; j < k; j += kWarp) {
      if (ids[j] < 0 || ids[j] >= n) continue;
      const double u = philox_uniform2(seed, r, draw, static_cast<uint32_t>(j)).x;
      const double v = static_cast<double>(sc[j]) - log(-log(u));
      if (better(v, ids[j], best_v, best_id)) {
        best_v = v;
        best_id = ids[j];
      }
    }
    warp_best(best_v, best_id);
    // Tail: each key outside S is looked at independently with probability pB = P(G > B);
    // geometric skips visit exactly those (a Binomial(n - k, pB) count of distinct, uniform ids).
    // Lane l runs its own process over its own tail positions [lo, hi), with its own Philox
    // blocks (kTailBlock0 + 32 step + l), and scores its own keys: up to 32 keys per warp step.
    const double b = ks > 0 ? best_v - s_min : -INFINITY;
    const double p_b = -expm1(-exp(-b));
    const double log_q = log1p(-p_b);  // -inf when pB = 1: every key is visited
    const int64_t lo = tail_n * lane / kWarp, hi = tail_n * (lane + 1) / kWarp;
    int64_t t = lo - 1;
    bool active = p_b > 0.0;
    double lane_v = -INFINITY;
    int64_t lane_id = -1;
    for (uint32_t step = 0;; ++step) {
      bool hit = false;
      double2 u = make_double2(0.5, 0.5);
      if (active) {
        u = philox_uniform2(seed, r, draw, kTailBlock0 + step * kWarp + lane);
        const double skip = p_b >= 1.0 ? 0.0 : floor(log(u.x) / log_q);  // failures first
        if (skip < static_cast<double>(hi - 1 - t)) {
          t += static_cast<int64_t>(skip) + 1;
          hit = true;
        } else {
          active = false;
        }
      }
      if (__ballot_sync(kFullMask, hit) == 0u) break;
      if (!hit) continue;
      const int64_t id = tail_id(before, ks, t);
      const RowRef<T> ref = locate(banks, id, dk, /*dv=*/int64_t(0));
      float acc = 0.f;
      if (ref.key != nullptr)
        for (int64_t i = 0; i < dk; ++i) acc += q_s[i] * load(ref.key + i);
      const double s = ref.key != nullptr ? static_cast<double>(scale * acc) : -INFINITY;
      ++scored;
      // Gumbel conditioned on > B: E = -log1p(-V pB), g = -log E.
      const double v = s - log(-log1p(-u.y * p_b));
      if (v > lane_v) {
        lane_v = v;
        lane_id = id;
      }
    }
    // The warp's best tail key, then against the top's best (ties to the smaller id).
    warp_best(lane_v, lane_id);
    if (better(lane_v, lane_id, best_v, best_id)) {
      best_v = lane_v;
      best_id = lane_id;
    }
    if (lane == 0) out_ids[r * samples + d] = best_id;
  }
  // Keys scored over all lanes.
  unsigned long long total = static_cast<unsigned long long>(scored);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(kFullMask, total, off);
  if (lane == 0) tail_scored[r] = static_cast<int64_t>(total);
}

}  // namespace

template <typename T>
cudaError_t lazy_gumbel_sample_cuda(const float* q, int64_t R, int64_t dk,
                                    const BankPointers<T>* banks, int nbanks,
                                    const int64_t* top_ids, const float* top_scores, int64_t k,
                                    float scale, int64_t samples, uint64_t seed, int64_t* out_ids,
                                    int64_t* tail_scored, cudaStream_t stream) {
  if (R < 0 || dk < 1 || dk > kCudaMaxDim || k < 1 || k > kCudaMaxK || samples < 0 ||
      samples > UINT32_MAX)
    return cudaErrorInvalidValue;
  BankSet<T> set;
  KVT_CUDA_TRY(make_bank_set(banks, nbanks, &set));
  if (R == 0) return cudaSuccess;
  int64_t n = 0;
  for (int b = 0; b < nbanks; ++b) n = std::max(n, banks[b].offset + banks[b].rows);
  lazy_gumbel_kernel<T>
      <<<blocks_for(R, kGumbelWarps), kGumbelWarps * kWarp, lazy_gumbel_smem_bytes(k, dk),
         stream>>>(q, R, dk, set, n, top_ids, top_scores, static_cast<int>(k), scale, samples, seed,
                   out_ids, tail_scored);
  return cudaGetLastError();
}

size_t lazy_gumbel_smem_bytes(int64_t k, int64_t dk) {
  return kGumbelWarps * (2 * k * sizeof(int64_t) + dk * sizeof(float));
}

template cudaError_t lazy_gumbel_sample_cuda<float>(const float*, int64_t, int64_t,
                                                    const BankPointers<float>*, int, const int64_t*,
                                                    const float*, int64_t, float, int64_t, uint64_t,
                                                    int64_t*, int64_t*, cudaStream_t);
template cudaError_t lazy_gumbel_sample_cuda<__nv_bfloat16>(const float*, int64_t, int64_t,
                                                            const BankPointers<__nv_bfloat16>*, int,
                                                            const int64_t*, const float*, int64_t,
                                                            float, int64_t, uint64_t, int64_t*,
                                                            int64_t*, cudaStream_t);

}  // namespace kvtune::kernels

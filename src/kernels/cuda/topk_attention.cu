// (c) forward and (d) backward of truncated top-k attention over retrieved rows.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace kvtune::kernels {
namespace {

using namespace cuda_detail;

constexpr int kRowWarps = 4;  // query rows per block, one warp each
constexpr int kDimSlots = kCudaMaxDim / kWarp;

// Softmax over the sorted top-k scores ts [k] (the first `kept` valid) into pr [k], then the
// values aggregated into out_r [dv] with lanes over d_v. Whole warp.
template <typename T>
__device__ __forceinline__ void softmax_aggregate(const float* ts, const int64_t* ti, int kept,
                                                  int k, const BankSet<T>& banks, int64_t dv,
                                                  float* pr, float* out_r) {
  const int lane = threadIdx.x % kWarp;
  const float max_s = kept > 0 ? ts[0] : 0.f;
  float z = 0.f;
  for (int j = lane; j < kept; j += kWarp) z += expf(ts[j] - max_s);
  z = warp_sum(z);
  for (int j = lane; j < k; j += kWarp) pr[j] = j < kept ? expf(ts[j] - max_s) / z : 0.f;
  __syncwarp();
  float acc[kDimSlots];
#pragma unroll
  for (int t = 0; t < kDimSlots; ++t) acc[t] = 0.f;
  for (int j = 0; j < kept; ++j) {
    const float p = pr[j];
    const T* vr = locate(banks, ti[j], /*dk=*/int64_t(0), dv).value;
#pragma unroll
    for (int t = 0; t < kDimSlots; ++t) {
      const int64_t i = t * kWarp + lane;
      if (i < dv) acc[t] += p * load(vr + i);
    }
  }
#pragma unroll
  for (int t = 0; t < kDimSlots; ++t) {
    const int64_t i = t * kWarp + lane;
    if (i < dv) out_r[i] = acc[t];
  }
}

// Warp per row: score the C candidates into shared memory, select the best k (written straight
// to the outputs), softmax, then aggregate the values with lanes over d_v. Rows per block:
// blockDim.x / 32 (topk_forward_warps: fewer for long candidate lists).
template <typename T>
__global__ void __launch_bounds__(kRowWarps* kWarp)
    topk_forward_kernel(const float* __restrict__ q, int64_t R, int64_t dk, int64_t dv,
                        BankSet<T> banks, const int64_t* __restrict__ cand, int C, int k,
                        float scale, int64_t* top_ids, float* top_scores, float* probs,
                        float* out) {
  extern __shared__ unsigned char smem_raw[];
  const int warps = blockDim.x / kWarp;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  float* cs = reinterpret_cast<float*>(smem_raw) + warp * C;  // [C] scores
  int64_t* ci = reinterpret_cast<int64_t*>(reinterpret_cast<float*>(smem_raw) + warps * C) +
                warp * C;  // [C] ids (-1: skipped)
  const int64_t r = static_cast<int64_t>(blockIdx.x) * warps + warp;
  if (r >= R) return;
  const float* qr = q + r * dk;
  for (int c = 0; c < C; ++c) {
    const int64_t id = cand[r * C + c];
    const RowRef<T> ref = locate(banks, id, dk, dv);
    float s = -INFINITY;
    if (ref.key != nullptr) s = scale * warp_dot(qr, ref.key, dk);
    if (lane == 0) {
      cs[c] = s;
      ci[c] = ref.key != nullptr ? id : -1;
    }
  }
  __syncwarp();
  float* ts = top_scores + r * k;
  int64_t* ti = top_ids + r * k;
  const int kept = warp_select(cs, ci, C, k, ts, ti);
  softmax_aggregate(ts, ti, kept, k, banks, dv, probs + r * k, out + r * dv);
}

// Warp per row over lists that are already the sorted top-k with their scores: the valid
// entries are counted (ids >= 0 come first), then softmax and aggregation as above.
template <typename T>
__global__ void __launch_bounds__(kRowWarps* kWarp)
    topk_aggregate_kernel(const int64_t* __restrict__ top_ids, const float* __restrict__ top_scores,
                          int64_t R, int k, int64_t dv, BankSet<T> banks, float* probs,
                          float* out) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (r >= R) return;
  const int64_t* ti = top_ids + r * k;
  int kept = 0;
  for (int j = threadIdx.x % kWarp; j < k; j += kWarp) kept += ti[j] >= 0 ? 1 : 0;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) kept += __shfl_xor_sync(kFullMask, kept, off);
  softmax_aggregate(top_scores + r * k, ti, kept, k, banks, dv, probs + r * k, out + r * dv);
}

// Warp per row: D = <dO, O>; g_j = p_j (<dO, v_j> - D); dq = c sum_j g_j k_j.
template <typename T>
__global__ void __launch_bounds__(kRowWarps* kWarp)
    topk_backward_query_kernel(const float* __restrict__ dout, const float* __restrict__ out,
                               const int64_t* __restrict__ top_ids, const float* __restrict__ probs,
                               int64_t R, int64_t dk, int64_t dv, int k, BankSet<T> banks,
                               float scale, float* g, float* dq) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowWarps + warp;
  if (r >= R) return;
  const float* dor = dout + r * dv;
  float d_r = 0.f;
  for (int64_t i = lane; i < dv; i += kWarp) d_r += dor[i] * out[r * dv + i];
  d_r = warp_sum(d_r);
  float acc[kDimSlots];
#pragma unroll
  for (int t = 0; t < kDimSlots; ++t) acc[t] = 0.f;
  for (int j = 0; j < k; ++j) {
    const RowRef<T> ref = locate(banks, top_ids[r * k + j], dk, dv);
    if (ref.key == nullptr) {
      if (lane == 0) g[r * k + j] = 0.f;
      continue;
    }
    const float grj = probs[r * k + j] * (warp_dot(dor, ref.value, dv) - d_r);
    if (lane == 0) g[r * k + j] = grj;
    const T* kr = ref.key;
#pragma unroll
    for (int t = 0; t < kDimSlots; ++t) {
      const int64_t i = t * kWarp + lane;
      if (i < dk) acc[t] += scale * grj * load(kr + i);
    }
  }
#pragma unroll
  for (int t = 0; t < kDimSlots; ++t) {
    const int64_t i = t * kWarp + lane;
    if (i < dk) dq[r * dk + i] = acc[t];
  }
}

// Thread per (r, j) pair in the bank: the first to claim a row gives it a compact slot.
__global__ void claim_rows_kernel(const int64_t* __restrict__ top_ids, int64_t pairs,
                                  int64_t offset, int64_t rows, int64_t* slot,
                                  int64_t* touched_rows, int64_t* touched_count) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= pairs) return;
  const int64_t local = top_ids[e] - offset;
  if (top_ids[e] < 0 || local < 0 || local >= rows) return;
  auto* cell = reinterpret_cast<unsigned long long*>(slot + local);
  // -1: free; -2: being claimed (no reader in this launch looks at it).
  if (atomicCAS(cell, static_cast<unsigned long long>(-1LL),
                static_cast<unsigned long long>(-2LL)) == static_cast<unsigned long long>(-1LL)) {
    const auto u =
        static_cast<int64_t>(atomicAdd(reinterpret_cast<unsigned long long*>(touched_count), 1ULL));
    touched_rows[u] = local;
    slot[local] = u;
  }
}

// Warp per (r, j) pair: atomicAdd of p dO_r into dvalues[slot] and of c g q_r into dkeys[slot].
constexpr int kPairWarps = 8;

__global__ void __launch_bounds__(kPairWarps* kWarp)
    accumulate_rows_kernel(const float* __restrict__ q, const float* __restrict__ dout,
                           const float* __restrict__ probs, const float* __restrict__ g,
                           const int64_t* __restrict__ top_ids, int64_t pairs, int k, int64_t dk,
                           int64_t dv, int64_t offset, int64_t rows, float scale,
                           const int64_t* __restrict__ slot, float* dkeys, float* dvalues) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kPairWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (e >= pairs) return;
  const int64_t local = top_ids[e] - offset;
  if (top_ids[e] < 0 || local < 0 || local >= rows) return;
  const int64_t u = slot[local];
  const int64_t r = e / k;
  if (dvalues != nullptr) {
    const float p = probs[e];
    for (int64_t i = lane; i < dv; i += kWarp)
      atomicAdd(dvalues + u * dv + i, p * dout[r * dv + i]);
  }
  if (dkeys != nullptr) {
    const float cg = scale * g[e];
    for (int64_t i = lane; i < dk; i += kWarp) atomicAdd(dkeys + u * dk + i, cg * q[r * dk + i]);
  }
}

__global__ void release_rows_kernel(const int64_t* __restrict__ touched_rows,
                                    const int64_t* __restrict__ touched_count, int64_t capacity,
                                    int64_t* slot) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u < capacity && u < *touched_count) slot[touched_rows[u]] = -1;
}

}  // namespace

template <typename T>
cudaError_t topk_attention_forward_cuda(const float* q, int64_t R, int64_t dk, int64_t dv,
                                        const BankPointers<T>* banks, int nbanks,
                                        const int64_t* cand, int64_t C, int64_t k, float scale,
                                        int64_t* top_ids, float* top_scores, float* probs,
                                        float* out, cudaStream_t stream) {
  if (R < 0 || dk < 1 || dk > kCudaMaxDim || dv < 1 || dv > kCudaMaxDim || C < 1 ||
      C > kCudaMaxCandidates || k < 1 || k > kCudaMaxK)
    return cudaErrorInvalidValue;
  BankSet<T> set;
  KVT_CUDA_TRY(make_bank_set(banks, nbanks, &set));
  if (R == 0) return cudaSuccess;
  const int warps = topk_forward_warps(C);
  topk_forward_kernel<T>
      <<<blocks_for(R, warps), warps * kWarp, topk_forward_smem_bytes(C), stream>>>(
          q, R, dk, dv, set, cand, static_cast<int>(C), static_cast<int>(k), scale, top_ids,
          top_scores, probs, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t topk_attention_aggregate_cuda(const int64_t* top_ids, const float* top_scores,
                                          int64_t R, int64_t k, int64_t dv,
                                          const BankPointers<T>* banks, int nbanks, float* probs,
                                          float* out, cudaStream_t stream) {
  if (R < 0 || dv < 1 || dv > kCudaMaxDim || k < 1 || k > kCudaMaxK) return cudaErrorInvalidValue;
  BankSet<T> set;
  KVT_CUDA_TRY(make_bank_set(banks, nbanks, &set));
  if (R == 0) return cudaSuccess;
  topk_aggregate_kernel<T><<<blocks_for(R, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      top_ids, top_scores, R, static_cast<int>(k), dv, set, probs, out);
  return cudaGetLastError();
}

int topk_forward_warps(int64_t C) {
  const size_t per_warp =
      static_cast<size_t>(std::max<int64_t>(C, 1)) * (sizeof(float) + sizeof(int64_t));
  return static_cast<int>(
      std::max<size_t>(1, std::min<size_t>(kRowWarps, kCudaSmemBudget / per_warp)));
}

size_t topk_forward_smem_bytes(int64_t C) {
  return static_cast<size_t>(topk_forward_warps(C)) * static_cast<size_t>(C) *
         (sizeof(float) + sizeof(int64_t));
}

template <typename T>
cudaError_t topk_attention_backward_query_cuda(const float* dout, const float* out,
                                               const int64_t* top_ids, const float* probs,
                                               int64_t R, int64_t dk, int64_t dv, int64_t k,
                                               const BankPointers<T>* banks, int nbanks,
                                               float scale, float* g, float* dq,
                                               cudaStream_t stream) {
  if (R < 0 || dk < 1 || dk > kCudaMaxDim || dv < 1 || dv > kCudaMaxDim || k < 1 || k > kCudaMaxK)
    return cudaErrorInvalidValue;
  BankSet<T> set;
  KVT_CUDA_TRY(make_bank_set(banks, nbanks, &set));
  if (R == 0) return cudaSuccess;
  topk_backward_query_kernel<T><<<blocks_for(R, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      dout, out, top_ids, probs, R, dk, dv, static_cast<int>(k), set, scale, g, dq);
  return cudaGetLastError();
}

cudaError_t topk_attention_backward_rows_cuda(const float* q, const float* dout, const float* probs,
                                              const float* g, const int64_t* top_ids, int64_t R,
                                              int64_t k, int64_t dk, int64_t dv, int64_t offset,
                                              int64_t rows, float scale, int64_t* slot,
                                              int64_t* touched_rows, int64_t* touched_count,
                                              float* dkeys, float* dvalues, cudaStream_t stream) {
  if (R < 0 || k < 1 || k > kCudaMaxK || dk < 1 || dv < 1 || rows < 1 || slot == nullptr ||
      touched_rows == nullptr || touched_count == nullptr)
    return cudaErrorInvalidValue;
  KVT_CUDA_TRY(cudaMemsetAsync(touched_count, 0, sizeof(int64_t), stream));
  const int64_t pairs = R * k;
  if (pairs == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  claim_rows_kernel<<<blocks_for(pairs, kThreads), kThreads, 0, stream>>>(
      top_ids, pairs, offset, rows, slot, touched_rows, touched_count);
  KVT_CUDA_TRY(cudaGetLastError());
  if (dkeys != nullptr || dvalues != nullptr) {
    accumulate_rows_kernel<<<blocks_for(pairs, kPairWarps), kPairWarps * kWarp, 0, stream>>>(
        q, dout, probs, g, top_ids, pairs, static_cast<int>(k), dk, dv, offset, rows, scale, slot,
        dkeys, dvalues);
    KVT_CUDA_TRY(cudaGetLastError());
  }
  const int64_t capacity = pairs < rows ? pairs : rows;
  release_rows_kernel<<<blocks_for(capacity, kThreads), kThreads, 0, stream>>>(
      touched_rows, touched_count, capacity, slot);
  return cudaGetLastError();
}

#define KVTUNE_INSTANTIATE(T)                                                                     \
  template cudaError_t topk_attention_forward_cuda<T>(                                            \
      const float*, int64_t, int64_t, int64_t, const BankPointers<T>*, int, const int64_t*,       \
      int64_t, int64_t, float, int64_t*, float*, float*, float*, cudaStream_t);                   \
  template cudaError_t topk_attention_backward_query_cuda<T>(                                     \
      const float*, const float*, const int64_t*, const float*, int64_t, int64_t, int64_t,        \
      int64_t, const BankPointers<T>*, int, float, float*, float*, cudaStream_t);                 \
  template cudaError_t topk_attention_aggregate_cuda<T>(const int64_t*, const float*, int64_t,    \
                                                        int64_t, int64_t, const BankPointers<T>*, \
                                                        int, float*, float*, cudaStream_t);
KVTUNE_INSTANTIATE(float)
KVTUNE_INSTANTIATE(__nv_bfloat16)
#undef KVTUNE_INSTANTIATE

}  // namespace kvtune::kernels

// (a) exact top-k search of queries against one bank, (b) merge of candidate lists.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace kvtune::kernels {
namespace {

using namespace cuda_detail;

constexpr int kSearchWarps = 8;                    // queries per block, one warp each
constexpr int kTileKeys = kWarp;                   // keys staged per tile: one per lane
constexpr int kBufferCap = kCudaMaxK + 2 * kWarp;  // per-warp candidates before a re-selection

size_t search_smem_bytes(int64_t dk) {
  return sizeof(float) * (kSearchWarps * dk + kTileKeys * (dk + 1)) +
         (sizeof(float) + sizeof(int64_t)) * kSearchWarps * kBufferCap;
}

// grid (ceil(R / kSearchWarps), splits); block kSearchWarps warps. Warp w owns query row
// blockIdx.x * kSearchWarps + w and chunk blockIdx.y of the keys. Each warp keeps a buffer of
// candidates: the best k so far (after a selection) plus newcomers that beat the k-th best;
// when the buffer could overflow on the next tile, it is cut back to the best k.
template <typename T>
__global__ void __launch_bounds__(kSearchWarps* kWarp)
    topk_search_kernel(const float* __restrict__ q, int64_t R, int dk, const T* __restrict__ keys,
                       int64_t N, int64_t id_offset, float scale, int k, int64_t chunk,
                       float* out_s, int64_t* out_ids, int64_t out_ld, int64_t out_split_ld) {
  extern __shared__ unsigned char smem_raw[];
  float* q_s = reinterpret_cast<float*>(smem_raw);  // [warps][dk]
  float* tile = q_s + kSearchWarps * dk;            // [kTileKeys][dk + 1] (padded)
  float* buf_s = tile + kTileKeys * (dk + 1);       // [warps][cap]
  int64_t* buf_id = reinterpret_cast<int64_t*>(buf_s + kSearchWarps * kBufferCap);

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kSearchWarps + warp;
  const bool active = r < R;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t end = min(N, begin + chunk);

  float* my_q = q_s + warp * dk;
  float* my_s = buf_s + warp * kBufferCap;
  int64_t* my_id = buf_id + warp * kBufferCap;
  for (int i = lane; i < dk; i += kWarp) my_q[i] = active ? q[r * dk + i] : 0.f;
  int count = 0;            // entries in the buffer
  bool full = false;        // the buffer's first k entries are the k best so far
  float thr_s = -INFINITY;  // the k-th best so far (valid when full)
  int64_t thr_id = -1;

  for (int64_t base = begin; base < end; base += kTileKeys) {
    __syncthreads();  // the previous tile is no longer read
    const int tile_rows = static_cast<int>(min(static_cast<int64_t>(kTileKeys), end - base));
    for (int e = threadIdx.x; e < tile_rows * dk; e += blockDim.x) {
      const int row = e / dk, col = e % dk;
      tile[row * (dk + 1) + col] = load(keys + (base + row) * dk + col);
    }
    __syncthreads();
    if (!active) continue;
    float s = -INFINITY;
    int64_t id = -1;
    if (lane < tile_rows) {
      const float* key = tile + lane * (dk + 1);
      float acc = 0.f;
      for (int i = 0; i < dk; ++i) acc += my_q[i] * key[i];
      s = scale * acc;
      id = id_offset + base + lane;
    }
    const bool keep = id >= 0 && (!full || better(s, id, thr_s, thr_id));
    const unsigned ballot = __ballot_sync(kFullMask, keep);
    if (keep) {
      const int pos = count + __popc(ballot & ((1u << lane) - 1u));
      my_s[pos] = s;
      my_id[pos] = id;
    }
    count += __popc(ballot);
    __syncwarp();
    if (count + kWarp > kBufferCap) {
      count = warp_select(my_s, my_id, count, k, my_s, my_id);
      full = count == k;
      if (full) {
        thr_s = my_s[k - 1];
        thr_id = my_id[k - 1];
      }
    }
  }
  if (!active) return;
  __syncwarp();
  warp_select(my_s, my_id, count, k, out_s + r * out_ld + blockIdx.y * out_split_ld,
              out_ids + r * out_ld + blockIdx.y * out_split_ld);
}

// One warp per row: the best k of the row's L entries, to row r * out_ld of the outputs.
constexpr int kMergeWarps = 8;

__global__ void __launch_bounds__(kMergeWarps* kWarp)
    topk_merge_kernel(const float* __restrict__ scores, const int64_t* __restrict__ ids, int64_t R,
                      int64_t L, int k, float* top_s, int64_t* top_ids, int64_t out_ld) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kMergeWarps + threadIdx.x / kWarp;
  if (r >= R) return;
  warp_select(scores + r * L, ids + r * L, static_cast<int>(L), k, top_s + r * out_ld,
              top_ids + r * out_ld);
}

cudaError_t launch_merge(const float* scores, const int64_t* ids, int64_t R, int64_t L, int64_t k,
                         float* top_scores, int64_t* top_ids, int64_t out_ld, cudaStream_t stream) {
  if (R < 0 || L < 1 || L > INT32_MAX || k < 1 || k > kCudaMaxK || out_ld < k)
    return cudaErrorInvalidValue;
  if (R == 0) return cudaSuccess;
  topk_merge_kernel<<<cuda_detail::blocks_for(R, kMergeWarps), kMergeWarps * kWarp, 0, stream>>>(
      scores, ids, R, L, static_cast<int>(k), top_scores, top_ids, out_ld);
  return cudaGetLastError();
}

}  // namespace

int topk_search_splits(int64_t R, int64_t N, int64_t k, int64_t max_partial_entries,
                       int multiprocessors) {
  // About 4 blocks per multiprocessor in all, chunks of at least 1024 keys.
  if (R < 1 || k < 1) return 1;
  const int64_t row_blocks = (R + kSearchWarps - 1) / kSearchWarps;
  int64_t splits = std::max<int64_t>(1, (4LL * multiprocessors + row_blocks - 1) / row_blocks);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, N / 1024));
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, max_partial_entries / (R * k)));
  return static_cast<int>(std::min<int64_t>(splits, 65535));
}

template <typename T>
cudaError_t topk_search_cuda(const float* q, int64_t R, int64_t dk, const T* keys, int64_t N,
                             int64_t id_offset, float scale, int64_t k, int splits,
                             float* partial_scores, int64_t* partial_ids, float* top_scores,
                             int64_t* top_ids, int64_t out_ld, cudaStream_t stream) {
  if (R < 0 || N < 1 || dk < 1 || dk > kCudaMaxDim || k < 1 || k > kCudaMaxK || splits < 1 ||
      splits > 65535 || out_ld < k)
    return cudaErrorInvalidValue;
  if (R == 0) return cudaSuccess;
  const int64_t chunk = (N + splits - 1) / splits;
  const size_t smem = search_smem_bytes(dk);
  KVT_CUDA_TRY(cudaFuncSetAttribute(
      topk_search_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(cuda_detail::blocks_for(R, kSearchWarps), static_cast<unsigned>(splits));
  if (splits == 1) {
    topk_search_kernel<T><<<grid, kSearchWarps * kWarp, smem, stream>>>(
        q, R, static_cast<int>(dk), keys, N, id_offset, scale, static_cast<int>(k), chunk,
        top_scores, top_ids, out_ld, 0);
    return cudaGetLastError();
  }
  if (partial_scores == nullptr || partial_ids == nullptr) return cudaErrorInvalidValue;
  topk_search_kernel<T><<<grid, kSearchWarps * kWarp, smem, stream>>>(
      q, R, static_cast<int>(dk), keys, N, id_offset, scale, static_cast<int>(k), chunk,
      partial_scores, partial_ids, splits * k, k);
  KVT_CUDA_TRY(cudaGetLastError());
  return launch_merge(partial_scores, partial_ids, R, splits * k, k, top_scores, top_ids, out_ld,
                      stream);
}

cudaError_t topk_merge_cuda(const float* scores, const int64_t* ids, int64_t R, int64_t L,
                            int64_t k, float* top_scores, int64_t* top_ids, cudaStream_t stream) {
  // The outputs must not overlap the inputs (the kernel reads them under __restrict__).
  return launch_merge(scores, ids, R, L, k, top_scores, top_ids, k, stream);
}

template cudaError_t topk_search_cuda<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                             int64_t, float, int64_t, int, float*, int64_t*, float*,
                                             int64_t*, int64_t, cudaStream_t);
template cudaError_t topk_search_cuda<__nv_bfloat16>(const float*, int64_t, int64_t,
                                                     const __nv_bfloat16*, int64_t, int64_t, float,
                                                     int64_t, int, float*, int64_t*, float*,
                                                     int64_t*, int64_t, cudaStream_t);

}  // namespace kvtune::kernels

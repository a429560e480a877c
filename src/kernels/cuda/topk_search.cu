// (a) exact top-k search: cuBLAS GEMM scores in chunks, streamed selection, merges; (b) merge of
// candidate lists with the same selection kernel.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace kvtune::kernels {
namespace {

using namespace cuda_detail;

constexpr int kSelectWarps = 8;                    // (row, slice) pairs per block, one warp each
constexpr int kBufferCap = kCudaMaxK + 2 * kWarp;  // per-warp candidates before a re-selection

// grid (ceil(R / kSelectWarps), slices); warp w owns row r = blockIdx.x * kSelectWarps + w and
// the entries [y * slice_len, min(L, (y + 1) * slice_len)) of that row, y = blockIdx.y. Entry e
// has score scale * scores[r * s_ld + e] and id ids[r * i_ld + e] (kExplicitIds; id < 0 skipped)
// or id_base + e. The warp streams its entries 32 at a time, keeping a buffer of candidates: the
// best k so far (after a selection) plus newcomers that beat the k-th best, found with a ballot;
// when the buffer could overflow on the next step it is cut back to the best k. Its best k,
// sorted, padded -inf / -1, go to out_s / out_ids + r * out_ld + y * k.
template <bool kExplicitIds>
__global__ void __launch_bounds__(kSelectWarps* kWarp)
    topk_select_kernel(const float* __restrict__ scores, int64_t s_ld,
                       const int64_t* __restrict__ ids, int64_t i_ld, int64_t R, int64_t L,
                       int64_t slice_len, int64_t id_base, float scale, int k,
                       float* __restrict__ out_s, int64_t* __restrict__ out_ids, int64_t out_ld) {
  __shared__ float buf_s[kSelectWarps][kBufferCap];
  __shared__ int64_t buf_id[kSelectWarps][kBufferCap];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kSelectWarps + warp;
  if (r >= R) return;  // whole warps leave: no block-wide barrier below
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * slice_len;
  const int64_t end = min(L, begin + slice_len);
  float* my_s = buf_s[warp];
  int64_t* my_id = buf_id[warp];
  const float* row_s = scores + r * s_ld;
  const int64_t* row_i = kExplicitIds ? ids + r * i_ld : nullptr;
  int count = 0;            // entries in the buffer
  bool full = false;        // the buffer's first k entries are the k best so far
  float thr_s = -INFINITY;  // the k-th best so far (valid when full)
  int64_t thr_id = -1;
  for (int64_t base = begin; base < end; base += kWarp) {
    const int64_t e = base + lane;
    float s = -INFINITY;
    int64_t id = -1;
    if (e < end) {
      s = scale * row_s[e];
      id = kExplicitIds ? row_i[e] : id_base + e;
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
  __syncwarp();
  warp_select(my_s, my_id, count, k, out_s + r * out_ld + blockIdx.y * k,
              out_ids + r * out_ld + blockIdx.y * k);
}

cudaError_t launch_select(const float* scores, int64_t s_ld, const int64_t* ids, int64_t i_ld,
                          int64_t R, int64_t L, int64_t slices, int64_t id_base, float scale, int k,
                          float* out_s, int64_t* out_ids, int64_t out_ld, cudaStream_t stream) {
  if (R == 0) return cudaSuccess;
  const int64_t slice_len = (L + slices - 1) / slices;
  const dim3 grid(blocks_for(R, kSelectWarps), static_cast<unsigned>(slices));
  if (ids != nullptr) {
    topk_select_kernel<true><<<grid, kSelectWarps * kWarp, 0, stream>>>(
        scores, s_ld, ids, i_ld, R, L, slice_len, id_base, scale, k, out_s, out_ids, out_ld);
  } else {
    topk_select_kernel<false><<<grid, kSelectWarps * kWarp, 0, stream>>>(
        scores, s_ld, nullptr, 0, R, L, slice_len, id_base, scale, k, out_s, out_ids, out_ld);
  }
  return cudaGetLastError();
}

// out[r, :] (bf16) = q[r, :] (float), for the bf16 GEMM.
__global__ void to_bf16_kernel(const float* __restrict__ q, int64_t count,
                               __nv_bfloat16* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2bfloat16(q[i]);
}

size_t align_up(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// The workspace of a plan: scores [row_block, chunk]; partial lists [row_block, (1 + slices) k]
// (block 0: the best k of the chunks so far); merge output [row_block, k]; bf16 queries.
struct Workspace {
  float* scores;
  float* part_s;
  int64_t* part_i;
  float* merged_s;
  int64_t* merged_i;
  __nv_bfloat16* q16;
};

size_t workspace_layout(const TopkSearchPlan& p, int64_t dk, int64_t k, bool bf16, void* base,
                        Workspace* ws) {
  const size_t part = static_cast<size_t>(p.row_block * (1 + p.slices) * k);
  const size_t merged = static_cast<size_t>(p.row_block * k);
  const size_t sizes[] = {sizeof(float) * static_cast<size_t>(p.row_block * p.chunk),
                          sizeof(float) * part,
                          sizeof(int64_t) * part,
                          sizeof(float) * merged,
                          sizeof(int64_t) * merged,
                          bf16 ? sizeof(__nv_bfloat16) * static_cast<size_t>(p.row_block * dk) : 0};
  char* at = static_cast<char*>(base);
  size_t total = 0;
  char* ptrs[6];
  for (int i = 0; i < 6; ++i) {
    ptrs[i] = at == nullptr ? nullptr : at + total;
    total += align_up(sizes[i]);
  }
  if (ws != nullptr) {
    ws->scores = reinterpret_cast<float*>(ptrs[0]);
    ws->part_s = reinterpret_cast<float*>(ptrs[1]);
    ws->part_i = reinterpret_cast<int64_t*>(ptrs[2]);
    ws->merged_s = reinterpret_cast<float*>(ptrs[3]);
    ws->merged_i = reinterpret_cast<int64_t*>(ptrs[4]);
    ws->q16 = reinterpret_cast<__nv_bfloat16*>(ptrs[5]);
  }
  return total;
}

cudaError_t blas_error(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown;
}

// scores [rows, len] (row-major, ld len) = q_rows [rows, dk] . keys [len, dk]^T, float32 out.
// cuBLAS is column-major: a row-major [rows, len] matrix is a column-major [len, rows] one, so
// the call computes C [len, rows] = A^T B with A = keys read as a column-major [dk, len] matrix
// (lda dk) and B = q read as a column-major [dk, rows] matrix (ldb dk).
cudaError_t score_gemm(cublasHandle_t blas, const float* q, const float* keys, int64_t rows,
                       int64_t len, int64_t dk, float* scores) {
  const float one = 1.f, zero = 0.f;
  cublasMath_t mode;
  if (cublasGetMathMode(blas, &mode) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  // Exact float32: TF32 would change the order of near-equal scores.
  if (cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
    return cudaErrorUnknown;
  const cublasStatus_t st =
      cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(len), static_cast<int>(rows),
                   static_cast<int>(dk), &one, keys, CUDA_R_32F, static_cast<int>(dk), q,
                   CUDA_R_32F, static_cast<int>(dk), &zero, scores, CUDA_R_32F,
                   static_cast<int>(len), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  cublasSetMathMode(blas, mode);
  return blas_error(st);
}

cudaError_t score_gemm(cublasHandle_t blas, const __nv_bfloat16* q16, const __nv_bfloat16* keys,
                       int64_t rows, int64_t len, int64_t dk, float* scores) {
  const float one = 1.f, zero = 0.f;
  return blas_error(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(len),
                                 static_cast<int>(rows), static_cast<int>(dk), &one, keys,
                                 CUDA_R_16BF, static_cast<int>(dk), q16, CUDA_R_16BF,
                                 static_cast<int>(dk), &zero, scores, CUDA_R_32F,
                                 static_cast<int>(len), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

cudaError_t copy_lists(const float* s, const int64_t* i, int64_t s_ld, int64_t rows, int64_t k,
                       float* out_s, int64_t* out_i, int64_t out_ld, cudaStream_t stream) {
  KVT_CUDA_TRY(cudaMemcpy2DAsync(out_s, sizeof(float) * out_ld, s, sizeof(float) * s_ld,
                                 sizeof(float) * k, rows, cudaMemcpyDeviceToDevice, stream));
  return cudaMemcpy2DAsync(out_i, sizeof(int64_t) * out_ld, i, sizeof(int64_t) * s_ld,
                           sizeof(int64_t) * k, rows, cudaMemcpyDeviceToDevice, stream);
}

}  // namespace

TopkSearchPlan topk_search_plan(int64_t R, int64_t N, int64_t dk, int64_t k, bool bf16_keys,
                                int multiprocessors) {
  TopkSearchPlan p;
  if (R < 1 || N < 1 || dk < 1 || k < 1) return p;
  constexpr int64_t kScoreFloats = kCudaSearchScoreBytes / sizeof(float);
  // Rows per GEMM: at most 4096 (larger blocks gain nothing once a GEMM fills the GPU); keys
  // per GEMM: what the score buffer holds, at least 4096 and at most 2^20 (int32 dimensions).
  p.row_block = std::min<int64_t>(R, 4096);
  p.chunk = std::min<int64_t>(
      N, std::min<int64_t>(int64_t(1) << 20, std::max<int64_t>(4096, kScoreFloats / p.row_block)));
  // Slices per chunk: about 4 warps per multiprocessor in all, at least 1024 keys each.
  const int64_t warps = std::max<int64_t>(1, 4LL * kSelectWarps * std::max(1, multiprocessors));
  int64_t slices = std::max<int64_t>(1, (warps + p.row_block - 1) / p.row_block);
  slices = std::min<int64_t>(slices, std::max<int64_t>(1, p.chunk / 1024));
  p.slices = std::min<int64_t>(slices, 65535);
  p.workspace_bytes = workspace_layout(p, dk, k, bf16_keys, nullptr, nullptr);
  return p;
}

template <typename T>
cudaError_t topk_search_cuda(cublasHandle_t blas, const TopkSearchPlan& plan, const float* q,
                             int64_t R, int64_t dk, const T* keys, int64_t N, int64_t id_offset,
                             float scale, int64_t k, void* workspace, float* top_scores,
                             int64_t* top_ids, int64_t out_ld, cudaStream_t stream) {
  constexpr bool kBf16 = !std::is_same<T, float>::value;
  if (R < 0 || N < 1 || dk < 1 || dk > kCudaMaxDim || k < 1 || k > kCudaMaxK || out_ld < k ||
      blas == nullptr)
    return cudaErrorInvalidValue;
  if (R == 0) return cudaSuccess;
  if (plan.row_block < 1 || plan.chunk < 1 || plan.slices < 1 || workspace == nullptr ||
      plan.workspace_bytes < workspace_layout(plan, dk, k, kBf16, nullptr, nullptr))
    return cudaErrorInvalidValue;
  Workspace ws;
  workspace_layout(plan, dk, k, kBf16, workspace, &ws);
  KVT_CUDA_TRY(blas_error(cublasSetStream(blas, stream)));
  const int ki = static_cast<int>(k);
  const int64_t chunks = (N + plan.chunk - 1) / plan.chunk;
  const int64_t part_ld = (1 + plan.slices) * k;
  for (int64_t r0 = 0; r0 < R; r0 += plan.row_block) {
    const int64_t rows = std::min(plan.row_block, R - r0);
    const float* qb = q + r0 * dk;
    float* out_s = top_scores + r0 * out_ld;
    int64_t* out_i = top_ids + r0 * out_ld;
    if constexpr (kBf16) {
      to_bf16_kernel<<<blocks_for(rows * dk, 256), 256, 0, stream>>>(qb, rows * dk, ws.q16);
      KVT_CUDA_TRY(cudaGetLastError());
    }
    // Block 0 of the partial lists: the best k of the chunks so far, none yet (ids -1).
    if (chunks > 1)
      KVT_CUDA_TRY(cudaMemset2DAsync(ws.part_i, sizeof(int64_t) * part_ld, 0xff,
                                     sizeof(int64_t) * k, rows, stream));
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * plan.chunk, len = std::min(plan.chunk, N - c0);
      if constexpr (kBf16) {
        KVT_CUDA_TRY(score_gemm(blas, ws.q16, keys + c0 * dk, rows, len, dk, ws.scores));
      } else {
        KVT_CUDA_TRY(score_gemm(blas, qb, keys + c0 * dk, rows, len, dk, ws.scores));
      }
      const int64_t slices = std::min<int64_t>(plan.slices, std::max<int64_t>(1, len / 1024));
      if (chunks == 1 && slices == 1) {  // one list: straight to the output
        KVT_CUDA_TRY(launch_select(ws.scores, len, nullptr, 0, rows, len, 1, id_offset, scale, ki,
                                   out_s, out_i, out_ld, stream));
        continue;
      }
      // The slices' lists go after block 0 (chunks > 1) or from column 0 (one chunk).
      const int64_t first = chunks > 1 ? k : 0;
      KVT_CUDA_TRY(launch_select(ws.scores, len, nullptr, 0, rows, len, slices, id_offset + c0,
                                 scale, ki, ws.part_s + first, ws.part_i + first, part_ld, stream));
      const int64_t lists = (chunks > 1 ? 1 : 0) + slices;
      if (c + 1 == chunks) {
        KVT_CUDA_TRY(launch_select(ws.part_s, part_ld, ws.part_i, part_ld, rows, lists * k, 1, 0,
                                   1.f, ki, out_s, out_i, out_ld, stream));
      } else {
        KVT_CUDA_TRY(launch_select(ws.part_s, part_ld, ws.part_i, part_ld, rows, lists * k, 1, 0,
                                   1.f, ki, ws.merged_s, ws.merged_i, k, stream));
        KVT_CUDA_TRY(copy_lists(ws.merged_s, ws.merged_i, k, rows, k, ws.part_s, ws.part_i, part_ld,
                                stream));
      }
    }
  }
  return cudaSuccess;
}

cudaError_t topk_merge_cuda(const float* scores, const int64_t* ids, int64_t R, int64_t L,
                            int64_t k, float* top_scores, int64_t* top_ids, cudaStream_t stream) {
  if (R < 0 || L < 1 || k < 1 || k > kCudaMaxK) return cudaErrorInvalidValue;
  return launch_select(scores, L, ids, L, R, L, 1, 0, 1.f, static_cast<int>(k), top_scores, top_ids,
                       k, stream);
}

size_t topk_select_smem_bytes() {
  return kSelectWarps * kBufferCap * (sizeof(float) + sizeof(int64_t));
}

template cudaError_t topk_search_cuda<float>(cublasHandle_t, const TopkSearchPlan&, const float*,
                                             int64_t, int64_t, const float*, int64_t, int64_t,
                                             float, int64_t, void*, float*, int64_t*, int64_t,
                                             cudaStream_t);
template cudaError_t topk_search_cuda<__nv_bfloat16>(cublasHandle_t, const TopkSearchPlan&,
                                                     const float*, int64_t, int64_t,
                                                     const __nv_bfloat16*, int64_t, int64_t, float,
                                                     int64_t, void*, float*, int64_t*, int64_t,
                                                     cudaStream_t);

}  // namespace kvtune::kernels

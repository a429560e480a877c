// CUDA kernels of kNN attention, free of torch (flashinfer style): raw device pointers, a
// cudaStream_t, a cudaError_t back. Every function only enqueues work on `stream` (no host
// synchronization) and returns the launch error, if any. The torch binding
// (attention/cuda/knn_attention_cuda_binding.h) checks shapes, dtypes, devices and contiguity,
// then calls these. They mirror the CPU kernels of knn_attention_cpu.h, with one difference of
// precision: bank rows are stored as float or bfloat16 (`T`), while queries, scores,
// probabilities, outputs and gradients are float (bf16 rows are widened on load).
//
// Notation as in knn_attention_cpu.h: R query rows (queries x heads flattened), unit q_r,
// s_rj = c <q_r, k_j>, p = softmax over the kept top-k, O_r = sum_j p_rj v_j. Global ids: bank
// b's row i is offset(b) + i. Missing entries: id -1, score -inf, probability 0. Order: score
// descending, ties to the smaller id (as on the CPU).
//
// This header needs the CUDA runtime headers (for cudaStream_t, cudaError_t and __nv_bfloat16)
// but not nvcc: host code compiled by the C++ compiler includes it.
#pragma once

#include <cstdint>

#include <cstddef>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "kernels/knn_attention_cpu.h"  // BankPointers<T>

namespace kvtune::kernels {

// Limits of these kernels (the binding checks them and names the limit it hit).
constexpr int kCudaMaxK = 128;            // k of every selection
constexpr int kCudaMaxDim = 256;          // d_k and d_v
constexpr int kCudaMaxBanks = 8;          // banks of one call
constexpr int kCudaMaxCandidates = 4096;  // C of topk_attention_forward_cuda

// ---- (a) exact search: scores of R queries against one bank's keys, the best k per query ----
// Tensor-core scoring, then selection (docs/gpu.md, "The search"):
//   1. query rows in blocks of plan.row_block; the bank's keys in chunks of plan.chunk;
//   2. per (row block, chunk), one cuBLAS GEMM writes the scores <q_r, k_j> as float
//      [rows, chunk] into the workspace: float32 banks in exact float32 (the handle's TF32 mode
//      is switched off for the call), bf16 banks on bf16 tensor cores with float32 accumulation
//      (the queries rounded to bf16 once);
//   3. a selection kernel (a warp per (row, slice of the chunk)) streams the scores once and
//      keeps each slice's best k behind a running threshold;
//   4. the slices' lists and the best k of the chunks so far are merged (the same selection
//      kernel over explicit ids).
// No allocation and no host synchronization: the caller passes a device workspace of
// plan.workspace_bytes (topk_search_plan) and a cuBLAS handle; the handle's stream is set to
// `stream` for the call. Results go to top_scores / top_ids [R, out_ld] from column 0 of each
// row, k columns (out_ld >= k lets several banks write side by side before topk_merge_cuda).
// Ids are id_offset + row; ties to the smaller id. Padding where N < k: -1 / -inf.
struct TopkSearchPlan {
  int64_t row_block = 0;  // query rows per GEMM
  int64_t chunk = 0;      // keys per GEMM
  int64_t slices = 0;     // warps per (row, chunk) in the selection
  size_t workspace_bytes = 0;
};

// The plan for R queries against N keys of d_k dims: the score buffer at most
// kCudaSearchScoreBytes, about 4 warps per multiprocessor in each selection launch.
constexpr int64_t kCudaSearchScoreBytes = int64_t(256) << 20;
TopkSearchPlan topk_search_plan(int64_t R, int64_t N, int64_t dk, int64_t k, bool bf16_keys,
                                int multiprocessors);

template <typename T>
cudaError_t topk_search_cuda(cublasHandle_t blas, const TopkSearchPlan& plan, const float* q,
                             int64_t R, int64_t dk, const T* keys, int64_t N, int64_t id_offset,
                             float scale, int64_t k, void* workspace, float* top_scores,
                             int64_t* top_ids, int64_t out_ld, cudaStream_t stream);

// ---- (b) merge of candidate lists: rows of L (score, id) pairs -> the best k, sorted ----
// Entries with id < 0 are skipped; ids within a row must be distinct (repeats are kept once).
// The outputs must not overlap the inputs. A warp per row streams the row once, as (a)'s
// selection.
cudaError_t topk_merge_cuda(const float* scores, const int64_t* ids, int64_t R, int64_t L,
                            int64_t k, float* top_scores, int64_t* top_ids, cudaStream_t stream);

// ---- (c) forward: exact re-scoring of candidates, top-k, softmax, aggregation ----
// As topk_attention_forward (CPU): for each row r, the C candidates cand[r, :] (global ids,
// -1 = none) are scored from the banks' keys, the best k kept, softmax over them, values
// aggregated. Outputs top_ids, top_scores, probs [R, k], out [R, dv]. `banks` is a host array
// of nbanks <= kCudaMaxBanks entries whose pointers are device pointers. One difference from the
// CPU kernel: a candidate id repeated within a row is kept once (the CPU would keep it twice;
// search_candidates never repeats one).
template <typename T>
cudaError_t topk_attention_forward_cuda(const float* q, int64_t R, int64_t dk, int64_t dv,
                                        const BankPointers<T>* banks, int nbanks,
                                        const int64_t* cand, int64_t C, int64_t k, float scale,
                                        int64_t* top_ids, float* top_scores, float* probs,
                                        float* out, cudaStream_t stream);

// The forward over lists that are already the top-k, sorted, with their scores (what (a) and
// (b) give): softmax over the valid entries (id >= 0), values aggregated. No key is read again.
// Writes probs [R, k] and out [R, dv].
template <typename T>
cudaError_t topk_attention_aggregate_cuda(const int64_t* top_ids, const float* top_scores,
                                          int64_t R, int64_t k, int64_t dv,
                                          const BankPointers<T>* banks, int nbanks, float* probs,
                                          float* out, cudaStream_t stream);

// Dynamic shared memory of the launches, for the host checks: each at most kCudaSmemBudget,
// the default limit of a block, so no launch needs the opt-in above it and every launch fits
// sm_80 (164 KiB per multiprocessor) as well as sm_90 (228 KiB). forward_warps: query rows per
// block of topk_attention_forward_cuda for C candidates (fewer for long candidate lists).
constexpr size_t kCudaSmemBudget = 48 * 1024;
int topk_forward_warps(int64_t C);
size_t topk_forward_smem_bytes(int64_t C);
size_t lazy_gumbel_smem_bytes(int64_t k, int64_t dk);
size_t topk_select_smem_bytes();

// ---- (d) backward ----
// Gradient to the queries, as topk_attention_backward_query (CPU): writes g [R, k] and dq [R, dk].
template <typename T>
cudaError_t topk_attention_backward_query_cuda(const float* dout, const float* out,
                                               const int64_t* top_ids, const float* probs,
                                               int64_t R, int64_t dk, int64_t dv, int64_t k,
                                               const BankPointers<T>* banks, int nbanks,
                                               float scale, float* g, float* dq,
                                               cudaStream_t stream);

// Sparse row gradients of one bank (rows [offset, offset + rows) of the id space), accumulated
// with atomicAdd (no races; the summation order, hence the last bits, may vary between runs):
//   dvalues[u] = sum p_rj dO_r;  dkeys[u] = c sum g_rj q_r   over pairs (r, j) with
//   top_ids[r, j] = offset + touched_rows[u].
// slot: device int64 [rows], every entry -1 on entry (cudaMemset to 0xff once) and again on
// return (the kernels reset what they set), so one buffer serves every step.
// touched_rows: device [min(R * k, rows)], written in no particular order; touched_count: one
// device int64, set to U. dkeys [min(R*k, rows), dk] and dvalues [.., dv] must be zero on entry;
// either may be null. Reading U needs a copy to the host after the stream's work.
cudaError_t topk_attention_backward_rows_cuda(const float* q, const float* dout, const float* probs,
                                              const float* g, const int64_t* top_ids, int64_t R,
                                              int64_t k, int64_t dk, int64_t dv, int64_t offset,
                                              int64_t rows, float scale, int64_t* slot,
                                              int64_t* touched_rows, int64_t* touched_count,
                                              float* dkeys, float* dvalues, cudaStream_t stream);

// ---- (e) lazy Gumbel sampling (docs/sampled-attention.md, The lazy Gumbel sampler) ----
// For each row r, `samples` exact draws from softmax(s_r) over all n keys of the banks, given the
// top-k set (top_ids, top_scores [R, k] from the forward). Tail keys come by geometric skips over
// the keys outside S (each one independently with probability pB, so their count is
// Binomial(n - k, pB) and they are distinct and uniform), numbered as in TailIds (lazy_gumbel.h).
// The tail positions are cut into 32 contiguous ranges, one per lane: each lane runs its own
// geometric process over its own range and scores its own keys, so a warp scores up to 32 tail
// keys per step (inclusion stays independent per key, so the draw is exact).
// Random numbers: Philox4x32-10 keyed by seed, counter (row, draw, block): the same seed and
// inputs give the same draws for any launch shape. Not the CPU's mt19937_64 streams: CPU and GPU
// draws agree in distribution, not draw for draw.
// out_ids [R, samples]; tail_scored [R]: keys outside S scored, over all draws of the row.
template <typename T>
cudaError_t lazy_gumbel_sample_cuda(const float* q, int64_t R, int64_t dk,
                                    const BankPointers<T>* banks, int nbanks,
                                    const int64_t* top_ids, const float* top_scores, int64_t k,
                                    float scale, int64_t samples, uint64_t seed, int64_t* out_ids,
                                    int64_t* tail_scored, cudaStream_t stream);

// ---- (f) sparse row-wise Adam (train/sparse_row_adam.h semantics: lazy Adam) ----
// For each of U distinct rows rows[u] of param [N, d]: steps[row] += 1 (t), m and v updated from
// grad[u], param[row] -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps).
// Rows not listed are not touched. rows must be distinct (coalesced).
cudaError_t sparse_row_adam_cuda(float* param, float* m, float* v, int64_t* steps, int64_t d,
                                 const int64_t* rows, const float* grad, int64_t U, double lr,
                                 double beta1, double beta2, double eps, cudaStream_t stream);

}  // namespace kvtune::kernels

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
// The bank's rows are cut into `splits` contiguous chunks; one launch scores every (query, chunk)
// pair (keys staged in shared memory 32 at a time, one warp per query keeping a running top-k
// behind a threshold), writing a partial top-k per chunk, then the partial lists are merged.
// partial_scores / partial_ids: device scratch of R * splits * k entries (unused when
// splits == 1). Results go to top_scores / top_ids [R, out_ld] starting at column 0 of each row,
// k columns (out_ld >= k lets several banks write side by side before topk_merge_cuda).
// Ids are id_offset + row. Padding where N < k: -1 / -inf.
template <typename T>
cudaError_t topk_search_cuda(const float* q, int64_t R, int64_t dk, const T* keys, int64_t N,
                             int64_t id_offset, float scale, int64_t k, int splits,
                             float* partial_scores, int64_t* partial_ids, float* top_scores,
                             int64_t* top_ids, int64_t out_ld, cudaStream_t stream);

// A number of chunks that fills the GPU without more than `max_partial_entries` of scratch
// (R * splits * k <= max_partial_entries; at least 1).
int topk_search_splits(int64_t R, int64_t N, int64_t k, int64_t max_partial_entries,
                       int multiprocessors);

// ---- (b) merge of candidate lists: rows of L (score, id) pairs -> the best k, sorted ----
// Entries with id < 0 are skipped; ids within a row must be distinct (repeats are kept once).
// The outputs must not overlap the inputs.
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

// The torch binding of the CUDA kernels (kernels/knn_attention_cuda.h): shape, dtype, device
// and contiguity checks, then launches on the current CUDA stream. Compiled only when libtorch
// has CUDA (KVTUNE_WITH_CUDA; CMakeLists.txt); includes no CUDA header, so host code needs no
// nvcc.
//
// Dtypes: queries float32; bank keys and values float32 or bfloat16 (one dtype for all banks);
// scores, probabilities, outputs and gradients float32 (bank gradients are cast to the bank's
// dtype when handed to autograd).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"
#include "attention/knn_attention.h"

namespace kvtune::cuda {

struct TopkLists {
  torch::Tensor scores;  // [R, k] float32, best first, -inf padded
  torch::Tensor ids;     // [R, k] int64, -1 padded
};

// Exact search of unit queries [R, dk] against keys [N, dk]: the best k of scale * <q, k_j>,
// ids id_offset + j. (a) in the kernels: cuBLAS GEMM scores in chunks (on the thread's torch
// cuBLAS handle and current stream), streamed selection, merges; a workspace from the caching
// allocator (at most about kCudaSearchScoreBytes plus the partial lists); no synchronization.
TopkLists topk_search(const torch::Tensor& q_unit, const torch::Tensor& keys, int64_t k,
                      double scale, int64_t id_offset = 0);

// The best k of each row of [R, L] lists (ids distinct per row, -1 skipped). (b).
TopkLists merge_topk(const torch::Tensor& scores, const torch::Tensor& ids, int64_t k);

// Every bank searched exactly (topk_search), the lists merged: the best k global ids with their
// scores, sorted. On CUDA the banks' faiss indexes are not used: the search is exact over the
// current keys.
TopkLists search_topk_cuda(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                           int64_t k, double scale);

struct TopkForward {
  torch::Tensor ids, scores, probs;  // [R, k]
  torch::Tensor output;              // [R, dv]
};

// (c): candidates cand [R, C] re-scored, top-k, softmax, values aggregated; no autograd.
TopkForward topk_attention_forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                   const torch::Tensor& cand, int64_t k, double scale);

// (c) over lists that are already the top-k (search_topk_cuda's): their scores are reused, no
// key is scored again; softmax and aggregation only. The op's forward.
TopkForward topk_attention_forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                   const TopkLists& top);

struct BankRowGradients {
  torch::Tensor rows;     // int64 [U], sorted, distinct (rows of this bank)
  torch::Tensor dkeys;    // float32 [U, dk], undefined when not asked for
  torch::Tensor dvalues;  // float32 [U, dv], undefined when not asked for
};

struct TopkBackward {
  torch::Tensor dq;                    // [R, dk]
  torch::Tensor g;                     // [R, k]
  std::vector<BankRowGradients> rows;  // one per bank (empty rows when not asked for)
};

// (d): gradients of the truncated top-k op. want_keys / want_values: one flag per bank.
TopkBackward topk_attention_backward(const torch::Tensor& q_unit,
                                     const std::vector<BankView>& banks, const TopkForward& fwd,
                                     const torch::Tensor& dout, double scale,
                                     const std::vector<bool>& want_keys,
                                     const std::vector<bool>& want_values);

struct GumbelSamples {
  torch::Tensor ids;          // int64 [R, samples]
  torch::Tensor tail_scored;  // int64 [R]
};

// (e): exact samples from softmax over every key of the banks, given the top-k set.
GumbelSamples lazy_gumbel_sample(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                 const torch::Tensor& top_ids, const torch::Tensor& top_scores,
                                 int64_t samples, double scale, uint64_t seed);

// (f): lazy Adam on rows (int64 [U], distinct) of param [N, d] (float32) with grad [U, d];
// m, v float32 [N, d], steps int64 [N], all on the param's device.
void sparse_row_adam_step(torch::Tensor& param, torch::Tensor& m, torch::Tensor& v,
                          torch::Tensor& steps, const torch::Tensor& rows,
                          const torch::Tensor& grad, double lr, double beta1, double beta2,
                          double eps);

// The op on CUDA tensors: estimator "topk" with backward "exact" (the others are CPU-only for
// now and are refused with a message). q_unit [R, dk] float32, unit rows; autograd to q_unit and
// to bank tensors that require grad (sparse COO row gradients, as on the CPU).
KnnAttentionResult knn_attention_cuda(const torch::Tensor& q_unit,
                                      const std::vector<BankView>& banks,
                                      const KnnAttentionOptions& options);

}  // namespace kvtune::cuda

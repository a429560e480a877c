// The kNN attention op: queries over a set of banks -> outputs, with scores scale * cos(q, k)
// and an estimator of the softmax chosen by name.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"

namespace kvtune {

struct KnnAttentionOptions {
  // "topk": softmax over the merged top-k of all banks (the seed module).
  // "dense": softmax over every key of every bank (the reference; small banks and tests).
  // "gumbel": median of means of exact lazy Gumbel samples from the softmax over every key
  //   (lazy_gumbel.h); forward only.
  // "topk+tail": the top-k plus `tail_samples` uniform keys from outside it, importance
  //   weighted (Mussmann's estimator, topk_tail.h).
  // Both sampled estimators look at the top-k set from the index, so `k` matters to them too.
  std::string estimator = "topk";
  // The gradient, whatever the forward estimator (docs/sampled-attention.md, Backward choices):
  // "exact": the exact gradient of the truncated top-k op ("topk"'s own backward);
  // "sampled": the shared-sample estimator of the full-softmax gradient: `backward_samples`
  //   lazy Gumbel draws j ~ P per query row give dV, dQ and dK over every key of every bank,
  //   with D = dO . O from the forward output (unbiased when that output is exact, as with
  //   "dense"; error ~ backward_samples^-1/2);
  // "dense": the exact full-softmax gradient, every key scored (the reference; O(N) per row).
  // Trainable banks get sparse row gradients from "exact" and "sampled"; frozen banks none.
  std::string backward = "exact";
  int64_t backward_samples = 32;
  int64_t k = 32;
  double scale = 0.0;  // 0 means sqrt(d_k), as in the seed module

  // "gumbel": `samples` draws per query row in `groups` groups of (near) equal size; the output
  // is the per-coordinate median of the group means of v (groups = 1: the plain mean, which is
  // unbiased). 128 draws give a Monte Carlo error of about 0.09 * (the spread of v under P).
  int64_t samples = 128;
  int64_t groups = 4;
  // "topk+tail": l, the uniform tail keys per query row (0: the top-k softmax; >= n - k: exact).
  int64_t tail_samples = 64;
  // "gumbel", "topk+tail": query row r draws from the stream stream_seed(seed, r) of a
  // std::mt19937_64 (lazy_gumbel.h): the same seed and inputs give the same output, with any
  // number of threads. The "sampled" backward uses streams independent of the forward's
  // (sampled_backward.h). A trainer must vary the seed between steps.
  uint64_t seed = 0;
};

struct KnnAttentionResult {
  torch::Tensor output;  // [..., dv]
  torch::Tensor ids;     // [..., k] global ids: bank b's row i is offset(b) + i, banks in order
  torch::Tensor scores;  // [..., k] scale * cos(q, k_id), best first; -inf where id is -1
};

// queries [..., dk] (normalized inside: cosine scores, autograd through the normalization).
// Differentiable in queries and in every bank tensor that requires grad, with the gradient
// options.backward names (any forward estimator with any backward); key and value gradients of
// "exact" and "sampled" are sparse COO tensors holding only the rows that received gradient.
// `learned_scale`, when defined, is a positive 0-dim tensor used as the scale instead of
// options.scale, with its gradient: the scores depend on the scale only through c * q_unit, so
// the op runs on q_unit * (c / c.item()) (the same values) with scale c.item(), and autograd
// gives dL/dc = sum_rows <q_unit, dL/dq_unit> / c, whatever the backward.
KnnAttentionResult knn_attention(const torch::Tensor& queries, const std::vector<BankView>& banks,
                                 const KnnAttentionOptions& options,
                                 const torch::Tensor& learned_scale = torch::Tensor());

// The backward choices, in the order documented above: exact, sampled, dense.
const std::vector<std::string>& attention_backward_names();

// Checks the banks and queries agree (dims, dtypes, devices, contiguity); names the bank.
void check_attention_inputs(const torch::Tensor& queries, const std::vector<BankView>& banks,
                            const KnnAttentionOptions& options);

// Global id of row 0 of each bank: {0, N0, N0+N1, ...}.
std::vector<int64_t> bank_offsets(const std::vector<BankView>& banks);

// Whether a call would record a gradient: grad mode is on and the queries or a bank's keys or
// values require one.
bool needs_gradient(const torch::Tensor& queries, const std::vector<BankView>& banks);

}  // namespace kvtune

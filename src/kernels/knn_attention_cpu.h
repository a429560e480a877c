// CPU kernels of truncated kNN attention over several banks. Raw pointers, no torch: the op in
// attention/ checks shapes and dtypes, then calls these. Parallel over query rows (OpenMP).
//
// Notation (docs/design.md): R query rows q_r (unit), candidate global ids per row, scale c,
// s_rj = c <q_r, k_j>, p = softmax over the kept top-k, O_r = sum_j p_rj v_j.
#pragma once

#include <cstdint>

namespace kvtune::kernels {

// One bank as the kernels see it: rows [offset, offset + rows) of the global id space.
template <typename T>
struct BankPointers {
  const T* keys = nullptr;    // [rows, dk]
  const T* values = nullptr;  // [rows, dv]
  int64_t rows = 0;
  int64_t offset = 0;
};

// For each row r: exact scores of its C candidates cand[r, :] (global ids, -1 = none), the best
// k kept (score descending, ties to the smaller id), softmax over them, values aggregated.
// Outputs: top_ids [R, k] (-1 padded), top_scores [R, k] (-inf padded), probs [R, k] (0 padded),
// out [R, dv]. A row with no valid candidate gets out = 0. probs and out both null: the selection
// only (top_ids and top_scores), with no softmax and no aggregation.
template <typename T>
void topk_attention_forward(const T* q, int64_t R, int64_t dk, int64_t dv,
                            const BankPointers<T>* banks, int nbanks, const int64_t* cand,
                            int64_t C, int64_t k, T scale, int64_t* top_ids, T* top_scores,
                            T* probs, T* out);

// Gradient to the (unit) queries: D_r = <dO_r, O_r>, g_rj = p_rj (<dO_r, v_j> - D_r),
// dq_r = c sum_j g_rj k_j. Writes g [R, k] (kept for the row gradients) and dq [R, dk].
template <typename T>
void topk_attention_backward_query(const T* dout, const T* out, const int64_t* top_ids,
                                   const T* probs, int64_t R, int64_t dk, int64_t dv, int64_t k,
                                   const BankPointers<T>* banks, int nbanks, T scale, T* g, T* dq);

// Row gradients of one bank, race-free: pairs are grouped by bank row beforehand.
// Row u owns pair_index[segments[u] .. segments[u+1]), each a flat index r*k + j:
//   dvalues[u] = sum p_rj dO_r;   dkeys[u] = c sum g_rj q_r.
// Either output may be null (that tensor does not train).
template <typename T>
void topk_attention_backward_rows(const T* q, const T* dout, const T* probs, const T* g,
                                  const int64_t* pair_index, const int64_t* segments, int64_t U,
                                  int64_t k, int64_t dk, int64_t dv, T scale, T* dkeys, T* dvalues);

}  // namespace kvtune::kernels

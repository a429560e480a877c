// Lazy Gumbel draws for many query rows at once, the sampler of the "gumbel" estimator and the
// "sampled" backward (docs/sampled-attention.md, "Blocks of rows: shared tail fields").
//
// The rows go in blocks of kGumbelBlockRows. Each row keeps its own stream for its top-k part
// (the Gumbel-max over S from one Gumbel and one uniform, as LazyGumbelSampler does) and for the
// Gumbels of its tail keys, but which tail keys a draw examines comes from fields shared by the
// rows of a block: field g holds a mark U_j for every key j of every bank, materialized lazily
// below the largest entry probability among the block's rank-g draws, and key j enters a draw
// of entry probability p = P(G > threshold) iff U_j < p. A row's draws use distinct fields, and a
// row ignores the field's keys that are in its own S. So every row's draws are exact and
// independent, as with one sampler per row. Draws of different rows of one block are weakly
// dependent: they examine nested sets of keys (the Gumbels stay independent). A key of a field
// is gathered once for every row of the block that examines it, instead of once per row.
//
// A row whose expected tail work is a large part of the bank (count * E[m] > n / 4, with
// E[m] = (n - k) / (1 + sum_S exp(s_j - s_min)), from S alone) scores every key and draws by
// inverse CDF instead: exact too, and cheaper there.
#pragma once

#include <cstdint>

#include "attention/impl/bank_rows.h"

namespace kvtune::impl {

// Rows per block: more rows share a field's gathers, but the field is materialized up to the
// largest entry probability among them (the lowest threshold).
constexpr int64_t kGumbelBlockRows = 32;

struct GumbelDrawStats {
  int64_t tail_keys = 0;        // (row, key) pairs outside S examined: the m of every draw
  int64_t gathered = 0;         // field keys gathered (each once per block)
  int64_t above_threshold = 0;  // tail keys scoring above their row's min(top_scores)
  int64_t dense_rows = 0;       // rows drawn by scoring every key
};

// `count` exact draws from softmax(scale <q_r, k_j>) over every key of `rows` for each of the R
// query rows: q [R, dk] unit rows in double; top_ids [R, k] distinct global ids per row (-1 =
// none, at least one valid), top_scores [R, k] their scores as BankRows::score_ids gives them.
// Row r's own stream is stream_seed(seed, r); the fields of block b come from
// stream_seed(stream_seed(seed, kFieldStreams), b * count + g). The result, ids [R, count], is
// the same for any number of threads. Parallel over blocks (OpenMP).
void lazy_gumbel_draws(const BankRows& rows, const double* q, const int64_t* top_ids,
                       const double* top_scores, int64_t R, int64_t k, int64_t count, double scale,
                       uint64_t seed, int64_t* ids, GumbelDrawStats* stats);

}  // namespace kvtune::impl

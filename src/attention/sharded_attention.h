// kNN attention over a bank whose rows are split across the ranks of a run ("memory
// parallelism", docs/distributed.md): each rank holds one contiguous shard of the rows and that
// shard's index, and no rank holds the whole bank.
//
// One call, made by every rank with its own queries:
//   1. the queries of all ranks are gathered (all-gather);
//   2. each rank searches its shard for every query: its best min(k, shard rows) candidates;
//   3. each rank sends every querying rank the candidates of that rank's queries: global ids, key
//      rows and value rows (all-to-all);
//   4. the querying rank merges the candidates of all shards into the global top-k (scores
//      re-computed from the rows, ties broken by global id) and aggregates the values;
//   5. in the backward pass, the gradients of the candidate rows travel back to the ranks that
//      own them (all-to-all), which sum them per row in a fixed order into sparse gradients.
// Ids, scores and outputs are exactly those of knn_attention with estimator "topk" over the
// whole bank (the same rows, scored and aggregated by the same kernel in the same order), k
// larger than a shard included. Only "topk" with backward "exact" and a fixed scale is
// supported.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "attention/bank_view.h"
#include "attention/knn_attention.h"
#include "common/communicator.h"
#include "common/row_share.h"

namespace kvtune {

// The rows of a bank of `rows` rows that rank `rank` of `world_size` holds (row_share). Throws
// when there are fewer rows than ranks.
RowShare shard_range(int64_t rows, int rank, int world_size);

struct BankShard {
  BankView view;       // this rank's rows (keys, values, their index); may require grad
  int64_t offset = 0;  // the global id of view's row 0
};

// queries [..., d_k] on this rank. Returns ids as global ids of the whole bank.
KnnAttentionResult sharded_knn_attention(const torch::Tensor& queries, const BankShard& shard,
                                         const KnnAttentionOptions& options, Communicator& comm);

}  // namespace kvtune

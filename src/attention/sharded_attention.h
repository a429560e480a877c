// kNN attention over a bank whose rows are split across the ranks of a run ("memory
// parallelism", docs/distributed.md): each rank holds one contiguous shard of the rows and that
// shard's index, and no rank holds the whole bank.
//
// A memory layer may search other banks beside the split one (a domain bank beside a sharded
// base bank): those are whole on every rank, and each rank searches them for its own queries.
//
// One call, made by every rank with its own queries:
//   1. the queries of all ranks are gathered (all-gather);
//   2. each rank searches its shard for every query: its best min(k, shard rows) candidates;
//   3. each rank sends every querying rank the candidates of that rank's queries: global ids, key
//      rows and value rows (all-to-all);
//   4. the querying rank adds the candidates of the whole banks (its own search), merges them all
//      into the global top-k (scores re-computed from the rows, ties broken by global id) and
//      aggregates the values;
//   5. in the backward pass, the gradients of the candidate rows travel back to the ranks that
//      own them (all-to-all), which sum them per row in a fixed order into sparse gradients. The
//      whole banks get this rank's own row gradients, as from knn_attention (data parallelism
//      then sums them over ranks).
// Ids, scores and outputs are exactly those of knn_attention with estimator "topk" over the
// banks whole (the same rows, scored and aggregated by the same kernel in the same order), k
// larger than a shard included, when every index searches exactly (Flat). Only "topk" with
// backward "exact" and a fixed scale is supported.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "attention/bank_view.h"
#include "attention/knn_attention.h"
#include "common/communicator.h"
#include "common/row_share.h"

namespace kvtune {

// The rows of a bank of `rows` rows that rank `rank` of `world_size` holds (row_share). Throws
// when there are fewer rows than ranks.
RowShare shard_range(int64_t rows, int rank, int world_size);

// The banks of one memory layer as one rank holds them. Global ids number the banks whole, in
// order: bank b's row i is (rows of banks 0..b-1, the split one counted whole) + i.
struct ShardedBanks {
  std::vector<BankView> banks;  // in attach order; banks[sharded]: this rank's shard (its rows,
                                // their index); each may require grad
  int sharded = 0;              // which bank is split across the ranks
  int64_t shard_offset = 0;     // the row of the whole split bank that the shard's row 0 is
  int64_t sharded_rows = 0;     // rows of the whole split bank
};

// queries [..., d_k] on this rank. Returns ids as global ids (above).
KnnAttentionResult sharded_knn_attention(const torch::Tensor& queries, const ShardedBanks& banks,
                                         const KnnAttentionOptions& options, Communicator& comm);

}  // namespace kvtune

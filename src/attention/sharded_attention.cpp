#include "attention/sharded_attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "attention/impl/estimators.h"
#include "attention/impl/row_gradient.h"
#include "attention/retrieval.h"
#include "common/check.h"

namespace kvtune {

RowShare shard_range(int64_t rows, int rank, int world_size) {
  KVT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "shard_range: rank ", rank, " of ",
            world_size);
  KVT_CHECK(rows >= world_size, "a bank of ", rows, " rows cannot be split over ", world_size,
            " ranks: every rank needs at least one row (run fewer processes or leave the bank "
            "whole)");
  return row_share(rows, rank, world_size);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the routing of candidate rows needs, both ways.
struct RouteArgs {
  Communicator* comm;
  torch::Tensor sent;           // int64 [Q, k]: the shard rows this rank sends, -1 = none
  std::vector<int64_t> counts;  // query rows of each rank (Q = their sum)
  torch::Tensor order;          // int64 [R * C]: received row -> its place sorted by global id
  int64_t rows = 0;             // R, this rank's query rows
};

// Shard key and value rows -> the candidate rows of this rank's queries, [R * C, d_k] and
// [R * C, d_v] with C = W * k, each query's candidates sorted by global id. The backward sends
// the gradients of those rows back to their owners, which sum them per row.
struct RouteRows : public torch::autograd::Function<RouteRows> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor keys, torch::Tensor values,
                               const RouteArgs& a) {
    const int64_t dk = keys.size(1), dv = values.size(1), D = dk + dv;
    const int64_t Q = a.sent.size(0), k = a.sent.size(1);
    const int W = a.comm->size();
    const auto sel = a.sent.reshape({-1}).clamp_min(0);
    auto payload =
        torch::cat({keys.detach().index_select(0, sel), values.detach().index_select(0, sel)}, 1)
            .reshape({Q, k * D})
            .contiguous();
    std::vector<int64_t> got;
    const auto recv = a.comm->alltoall_rows(payload, a.counts, &got, "sharded rows");
    // [W, R, k, D] in sender order -> [R, W * k, D], then each query's candidates by global id.
    const auto by_query = recv.reshape({W, a.rows, k, D}).permute({1, 0, 2, 3}).reshape({-1, D});
    const auto sorted = by_query.index_select(0, a.order);
    ctx->saved_data["dims"] = std::vector<int64_t>{dk, dv, k, a.rows};
    ctx->saved_data["counts"] = a.counts;
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(a.comm);
    ctx->save_for_backward({a.sent, a.order, keys, values});
    return {sorted.narrow(1, 0, dk).contiguous(), sorted.narrow(1, dk, dv).contiguous()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto dims = ctx->saved_data["dims"].toIntVector();
    const int64_t dk = dims[0], dv = dims[1], k = dims[2], R = dims[3], D = dk + dv;
    const auto counts = ctx->saved_data["counts"].toIntVector();
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto& sent = saved[0];
    const auto& order = saved[1];
    const auto& keys = saved[2];
    const auto& values = saved[3];
    const int W = comm->size();
    const auto opts = keys.options();
    auto dense = [&](const torch::Tensor& g, int64_t d) {
      if (!g.defined()) return torch::zeros({R * W * k, d}, opts);
      return g.is_sparse() ? g.to_dense() : g;
    };
    const auto g_sorted = torch::cat({dense(grads[0], dk), dense(grads[1], dv)}, 1);
    // Undo the sort, then back to sender order: to owner s, the rows it sent for my queries.
    auto g_by_query = torch::zeros_like(g_sorted).index_copy_(0, order, g_sorted);
    const auto g_send =
        g_by_query.reshape({R, W, k, D}).permute({1, 0, 2, 3}).reshape({W * R, k * D});
    std::vector<int64_t> to_owners(static_cast<size_t>(W), R), got;
    const auto back = comm->alltoall_rows(g_send.contiguous(), to_owners, &got, "sharded grads");
    // `back` holds, in the order this rank sent them, the gradients of the rows it sent: sum per
    // shard row, in that order (the same order on every run).
    const auto flat_rows = sent.reshape({-1});
    const auto valid = torch::nonzero(flat_rows >= 0).reshape({-1});
    const auto rows = flat_rows.index_select(0, valid);
    const auto g_rows = back.reshape({-1, D}).index_select(0, valid);
    variable_list out(3);
    if (rows.numel() == 0) return out;
    const auto uniq = at::_unique(rows, /*sorted=*/true, /*return_inverse=*/true);
    const auto& ids = std::get<0>(uniq);
    auto summed = torch::zeros({ids.size(0), D}, opts);
    summed.index_add_(0, std::get<1>(uniq), g_rows);
    if (keys.requires_grad())
      out[0] = impl::row_gradient(ids, summed.narrow(1, 0, dk).contiguous(), keys);
    if (values.requires_grad())
      out[1] = impl::row_gradient(ids, summed.narrow(1, dk, dv).contiguous(), values);
    return out;
  }
};

}  // namespace

KnnAttentionResult sharded_knn_attention(const torch::Tensor& queries, const BankShard& shard,
                                         const KnnAttentionOptions& options, Communicator& comm) {
  KVT_CHECK(options.estimator == "topk" && options.backward == "exact",
            "a sharded bank supports estimator topk with backward exact only, not estimator '",
            options.estimator, "' with backward '", options.backward,
            "' (docs/distributed.md): set attention.estimator: topk and backward: exact");
  check_attention_inputs(queries, {shard.view}, options);
  KnnAttentionOptions resolved = options;
  const int64_t dk = queries.size(-1);
  if (resolved.scale == 0.0) resolved.scale = std::sqrt(static_cast<double>(dk));
  // The same normalization as knn_attention, so that the rows are bit for bit the same.
  const auto q_unit = torch::nn::functional::normalize(
      queries.reshape({-1, dk}),
      torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  const int64_t R = q_unit.size(0), k = resolved.k;
  const int W = comm.size();

  // 1. Every rank's queries, in rank order.
  std::vector<int64_t> counts;
  const auto q_all = comm.allgather_rows(q_unit.detach().contiguous(), "sharded queries", &counts);
  for (int r = 0; r < W; ++r) {
    KVT_CHECK(counts[static_cast<size_t>(r)] > 0, "sharded attention: rank ", r,
              " has no query rows: every rank must call with at least one");
  }
  // 2. This shard's best min(k, rows) for each of them, padded to k with -1.
  const int64_t k_here = std::min<int64_t>(k, shard.view.size());
  auto sent = torch::full({q_all.size(0), k}, int64_t{-1}, torch::kInt64);
  sent.narrow(1, 0, k_here).copy_(search_candidates(q_all, {shard.view}, k_here));
  auto sent_ids = torch::where(sent >= 0, sent + shard.offset, sent).contiguous();
  // 3. Each querying rank gets its queries' candidates from every shard.
  std::vector<int64_t> got;
  const auto recv_ids = comm.alltoall_rows(sent_ids, counts, &got, "sharded ids");
  const int64_t C = W * k;
  const auto ids = recv_ids.reshape({W, R, k}).permute({1, 0, 2}).reshape({R, C});
  // Candidates in global id order (none last): the kernel's ties then fall to the lower id.
  const auto sort_key =
      torch::where(ids >= 0, ids, torch::full_like(ids, std::numeric_limits<int64_t>::max()));
  const auto order = std::get<1>(torch::sort(sort_key, c10::optional<bool>(true), /*dim=*/1,
                                             /*descending=*/false));
  const auto sorted_ids = ids.gather(1, order);
  const auto flat_order =
      (order + (torch::arange(R, torch::kInt64) * C).unsqueeze(1)).reshape({-1}).contiguous();
  RouteArgs args{&comm, sent, counts, flat_order, R};
  auto routed = RouteRows::apply(shard.view.keys, shard.view.values, args);
  // 4. The top-k of the merged candidates, by the "topk" estimator itself.
  BankView gathered{routed[0], routed[1], nullptr, "gathered candidates of " + shard.view.name};
  const auto local = torch::arange(R * C, torch::kInt64).reshape({R, C});
  const auto candidates = torch::where(sorted_ids >= 0, local, torch::full_like(local, -1));
  auto res = impl::topk_from_candidates(q_unit, {gathered}, resolved, candidates);
  const auto flat_ids = sorted_ids.reshape({-1});
  res.ids = torch::where(
      res.ids >= 0,
      flat_ids.index_select(0, res.ids.reshape({-1}).clamp_min(0)).reshape(res.ids.sizes()),
      res.ids);
  return impl::with_lead_dims(std::move(res), queries);
}

}  // namespace kvtune

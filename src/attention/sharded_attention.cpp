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
  int64_t rows = 0;             // R, this rank's query rows
};

// Shard key and value rows -> the candidate rows of this rank's queries, [R * C, d_k] and
// [R * C, d_v] with C = W * k: query r's candidates from shard s at rows r * C + s * k ... The
// backward sends the gradients of those rows back to their owners, which sum them per row.
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
    // [W, R, k, D] in sender order -> [R, W * k, D].
    const auto by_query = recv.reshape({W, a.rows, k, D}).permute({1, 0, 2, 3}).reshape({-1, D});
    ctx->saved_data["dims"] = std::vector<int64_t>{dk, dv, k, a.rows};
    ctx->saved_data["counts"] = a.counts;
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(a.comm);
    ctx->save_for_backward({a.sent, keys, values});
    return {by_query.narrow(1, 0, dk).contiguous(), by_query.narrow(1, dk, dv).contiguous()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto dims = ctx->saved_data["dims"].toIntVector();
    const int64_t dk = dims[0], dv = dims[1], k = dims[2], R = dims[3], D = dk + dv;
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto& sent = saved[0];
    const auto& keys = saved[1];
    const auto& values = saved[2];
    const int W = comm->size();
    const auto opts = keys.options();
    auto dense = [&](const torch::Tensor& g, int64_t d) {
      if (!g.defined()) return torch::zeros({R * W * k, d}, opts);
      return g.is_sparse() ? g.to_dense() : g;
    };
    const auto g_by_query = torch::cat({dense(grads[0], dk), dense(grads[1], dv)}, 1);
    // Back to sender order: to owner s, the rows it sent for my queries.
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

// Global ids of candidates that index the concatenation of `banks` (-1 kept): the row of bank j
// there becomes global[j] + its row in bank j.
torch::Tensor to_global(const torch::Tensor& concat_ids, const std::vector<BankView>& banks,
                        const std::vector<int64_t>& global) {
  auto out = torch::full_like(concat_ids, -1);
  int64_t begin = 0;
  for (size_t j = 0; j < banks.size(); ++j) {
    const int64_t end = begin + banks[j].size();
    const auto in = (concat_ids >= begin) & (concat_ids < end);
    out = torch::where(in, concat_ids - begin + global[j], out);
    begin = end;
  }
  return out;
}

}  // namespace

KnnAttentionResult sharded_knn_attention(const torch::Tensor& queries, const ShardedBanks& sb,
                                         const KnnAttentionOptions& options, Communicator& comm) {
  KVT_CHECK(options.estimator == "topk" && options.backward == "exact",
            "a sharded bank supports estimator topk with backward exact only, not estimator '",
            options.estimator, "' with backward '", options.backward,
            "' (docs/distributed.md): set attention.estimator: topk and backward: exact");
  const int nb = static_cast<int>(sb.banks.size());
  KVT_CHECK(sb.sharded >= 0 && sb.sharded < nb, "sharded attention: bank ", sb.sharded,
            " is to be split but there are ", nb, " bank(s)");
  const BankView& shard = sb.banks[static_cast<size_t>(sb.sharded)];
  KVT_CHECK(sb.shard_offset >= 0 && sb.shard_offset + shard.size() <= sb.sharded_rows,
            "sharded attention: a shard of ", shard.size(), " rows at row ", sb.shard_offset,
            " does not lie in a bank of ", sb.sharded_rows, " rows");
  check_attention_inputs(queries, sb.banks, options);
  KnnAttentionOptions resolved = options;
  const int64_t dk = queries.size(-1);
  if (resolved.scale == 0.0) resolved.scale = std::sqrt(static_cast<double>(dk));
  // The same normalization as knn_attention, so that the rows are bit for bit the same.
  const auto q_unit = torch::nn::functional::normalize(
      queries.reshape({-1, dk}),
      torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  const int64_t R = q_unit.size(0), k = resolved.k;
  const int W = comm.size();
  // Global id of row 0 of each bank, the split one counted whole.
  std::vector<int64_t> global(static_cast<size_t>(nb));
  for (int b = 0, next = 0; b < nb; ++b) {
    global[static_cast<size_t>(b)] = next;
    next += b == sb.sharded ? sb.sharded_rows : sb.banks[static_cast<size_t>(b)].size();
  }

  // 1. Every rank's queries, in rank order.
  std::vector<int64_t> counts;
  const auto q_all = comm.allgather_rows(q_unit.detach().contiguous(), "sharded queries", &counts);
  for (int r = 0; r < W; ++r) {
    KVT_CHECK(counts[static_cast<size_t>(r)] > 0, "sharded attention: rank ", r,
              " has no query rows: every rank must call with at least one");
  }
  // 2. This shard's best min(k, rows) for each of them, padded to k with -1.
  const int64_t k_here = std::min<int64_t>(k, shard.size());
  auto sent = torch::full({q_all.size(0), k}, int64_t{-1}, torch::kInt64);
  sent.narrow(1, 0, k_here).copy_(search_candidates(q_all, {shard}, k_here));
  const int64_t first = global[static_cast<size_t>(sb.sharded)] + sb.shard_offset;
  auto sent_ids = torch::where(sent >= 0, sent + first, sent).contiguous();
  // 3. Each querying rank gets its queries' candidates from every shard, rows included.
  std::vector<int64_t> got;
  const auto recv_ids = comm.alltoall_rows(sent_ids, counts, &got, "sharded ids");
  const int64_t C = W * k;
  const auto shard_ids = recv_ids.reshape({W, R, k}).permute({1, 0, 2}).reshape({R, C});
  RouteArgs args{&comm, sent, counts, R};
  auto routed = RouteRows::apply(shard.keys, shard.values, args);
  // 4. The whole banks' own candidates, then all of them in global id order (none last): the
  // kernel's ties then fall to the lower id. Candidates index the views {gathered, whole...}.
  std::vector<BankView> views = {
      BankView{routed[0], routed[1], nullptr, "gathered candidates of " + shard.name}};
  std::vector<BankView> whole;
  std::vector<int64_t> whole_global;
  for (int b = 0; b < nb; ++b) {
    if (b == sb.sharded) continue;
    whole.push_back(sb.banks[static_cast<size_t>(b)]);
    whole_global.push_back(global[static_cast<size_t>(b)]);
    views.push_back(whole.back());
  }
  auto ids = shard_ids;
  auto local = torch::arange(R * C, torch::kInt64).reshape({R, C});
  local = torch::where(shard_ids >= 0, local, torch::full_like(local, -1));
  if (!whole.empty()) {
    const auto concat = search_candidates(q_unit, whole, k);
    ids = torch::cat({ids, to_global(concat, whole, whole_global)}, 1);
    local = torch::cat({local, torch::where(concat >= 0, concat + R * C, concat)}, 1);
  }
  const auto sort_key =
      torch::where(ids >= 0, ids, torch::full_like(ids, std::numeric_limits<int64_t>::max()));
  const auto order = std::get<1>(torch::sort(sort_key, c10::optional<bool>(true), /*dim=*/1,
                                             /*descending=*/false));
  const auto candidates = local.gather(1, order).contiguous();
  // 5. The top-k of the merged candidates, by the "topk" estimator itself.
  auto res = impl::topk_from_candidates(q_unit, views, resolved, candidates);
  // Its ids index the views: back to global ids.
  const auto picked = res.ids.reshape({-1});
  const auto from_shard = shard_ids.reshape({-1}).index_select(0, picked.clamp(0, R * C - 1));
  auto mapped = torch::where(picked < R * C, from_shard, picked);
  if (!whole.empty()) {
    mapped = torch::where(picked >= R * C, to_global(picked - R * C, whole, whole_global), mapped);
  }
  res.ids = torch::where(picked >= 0, mapped, picked).reshape(res.ids.sizes());
  return impl::with_lead_dims(std::move(res), queries);
}

}  // namespace kvtune

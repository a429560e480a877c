#include "train/data_parallel.h"

#include <algorithm>
#include <map>
#include <vector>

#include "common/check.h"
#include "common/crc32.h"
#include "train/row_optimizer.h"

namespace kvtune {

RowShare batch_share(int64_t batch, int rank, int world_size) {
  KVT_CHECK(batch >= world_size, "train.batch_size ", batch, " is smaller than the ", world_size,
            " ranks: every rank needs at least one sequence of the global batch. Raise ",
            "train.batch_size or run fewer processes");
  return row_share(batch, rank, world_size);
}

namespace {

// The dense parameters that train, in one fixed order on every rank.
std::vector<torch::Tensor> dense_params(const TrainState& s) {
  std::vector<torch::Tensor> ps = s.dense;
  if (s.log_scale.defined()) ps.push_back(s.log_scale);
  return ps;
}

void sum_dense(Communicator& c, const std::vector<torch::Tensor>& ps) {
  if (ps.empty()) return;
  // Which parameters have a gradient on some rank: those get the sum, the others stay without.
  auto has = torch::zeros({static_cast<int64_t>(ps.size())}, torch::kInt64);
  for (size_t i = 0; i < ps.size(); ++i)
    if (ps[i].grad().defined()) has[static_cast<int64_t>(i)] = 1;
  c.allreduce_sum(has, "dense");
  // One buffer per dtype (in practice one), parameters in order.
  std::map<torch::ScalarType, std::vector<size_t>> by_type;
  for (size_t i = 0; i < ps.size(); ++i)
    if (has[static_cast<int64_t>(i)].item<int64_t>() > 0) by_type[ps[i].scalar_type()].push_back(i);
  for (const auto& [type, idx] : by_type) {
    std::vector<torch::Tensor> flat;
    for (size_t i : idx) {
      const auto& g = ps[i].grad();
      flat.push_back(g.defined() ? (g.is_sparse() ? g.to_dense() : g).reshape({-1})
                                 : torch::zeros({ps[i].numel()}, ps[i].options()));
    }
    auto buffer = torch::cat(flat).contiguous();
    c.allreduce_sum(buffer, "dense");
    int64_t at = 0;
    for (size_t i : idx) {
      auto p = ps[i];
      p.mutable_grad() = buffer.narrow(0, at, p.numel()).view(p.sizes()).clone();
      at += p.numel();
    }
  }
}

void sum_rows(Communicator& c, torch::Tensor p) {
  torch::NoGradGuard no_grad;
  const RowGradient rg = row_gradient(p);
  const int64_t d = p.size(1);
  const auto rows = rg.rows.defined() ? rg.rows.contiguous() : torch::empty({0}, torch::kInt64);
  const auto grads = rg.rows.defined() ? rg.grad.contiguous() : torch::empty({0, d}, p.options());
  const auto all_rows = c.allgather_rows(rows, "sparse");
  const auto all_grads = c.allgather_rows(grads, "sparse");
  if (all_rows.numel() == 0) {
    p.mutable_grad() = torch::Tensor();
    return;
  }
  // Every rank holds the same (ids, rows) in the same order, and sums them the same way: one
  // index_add_ in that order, into the sorted distinct ids.
  const auto uniq = at::_unique(all_rows, /*sorted=*/true, /*return_inverse=*/true);
  const auto& ids = std::get<0>(uniq);
  const auto& inverse = std::get<1>(uniq);
  auto summed = torch::zeros({ids.size(0), d}, p.options());
  summed.index_add_(0, inverse, all_grads);
  p.mutable_grad() = torch::sparse_coo_tensor(ids.unsqueeze(0), summed, p.sizes(),
                                              summed.options().layout(torch::kSparse))
                         ._coalesced_(true);
}

std::string weights_crc(const TrainState& s) {
  Crc32 crc;
  auto add = [&crc](const torch::Tensor& t) {
    const auto c = t.detach().contiguous();
    crc.update(c.data_ptr(), c.nbytes());
  };
  for (const auto& p : dense_params(s)) add(p);
  // A split bank's shard is this rank's own: the ranks hold different rows.
  for (const auto& p : s.bank_params)
    if (!is_split_bank_param(s, p)) add(p);
  return crc.hex();
}

}  // namespace

void sum_gradients(Communicator& c, TrainState& s) {
  if (c.size() == 1) return;
  sum_dense(c, dense_params(s));
  // A split bank's gradient is whole already: the sharded op sent every rank's row gradients to
  // the rank that owns the row (attention/sharded_attention.h).
  for (auto& p : s.bank_params)
    if (!is_split_bank_param(s, p)) sum_rows(c, p);
}

void check_ranks_agree(Communicator& c, const TrainState& s, int64_t first_step,
                       const std::string& recipe_text) {
  if (c.size() == 1) return;
  const auto weights = std::stoull(weights_crc(s), nullptr, 16);
  const auto recipe = std::stoull(crc32_hex(recipe_text), nullptr, 16);
  auto mine = torch::tensor(
      {first_step, static_cast<int64_t>(weights), static_cast<int64_t>(recipe)}, torch::kInt64);
  const auto all = c.allgather_rows(mine.unsqueeze(0), "setup");
  for (int r = 1; r < c.size(); ++r) {
    KVT_CHECK(all[r][2].item<int64_t>() == all[0][2].item<int64_t>(), "rank ", r,
              " runs another recipe than rank 0: start every rank with the same recipe and --set");
    KVT_CHECK(all[r][0].item<int64_t>() == all[0][0].item<int64_t>(), "rank ", r,
              " resumes at step ", all[r][0].item<int64_t>(), " but rank 0 at step ",
              all[0][0].item<int64_t>(),
              ": every rank must read the same checkpoint (the output folder must be the same "
              "folder for all, e.g. on a shared file system)");
    KVT_CHECK(all[r][1].item<int64_t>() == all[0][1].item<int64_t>(), "rank ", r,
              "'s trainable weights differ from rank 0's before the first step: every rank must ",
              "load the same base model and checkpoint (docs/distributed.md)");
  }
}

void check_ranks_identical(Communicator& c, const TrainState& s, int64_t step) {
  if (c.size() == 1) return;
  const auto weights = static_cast<int64_t>(std::stoull(weights_crc(s), nullptr, 16));
  const auto all = c.allgather_rows(torch::tensor({weights}, torch::kInt64), "setup");
  for (int r = 1; r < c.size(); ++r) {
    KVT_CHECK(all[r].item<int64_t>() == all[0].item<int64_t>(), "rank ", r,
              "'s weights differ from rank 0's after step ", step,
              ": the ranks diverged. This is a kvtune bug; please report it with the recipe");
  }
}

}  // namespace kvtune

// One rank of the multi-process tests (test_distributed.cpp starts 2 or 3 of these with the
// launch variables set). Each scenario checks its results against a reference computed in the
// same process without communication and exits 0 when they agree, 1 (with a message) when not.
//   kvtune_dist_worker collectives
//   kvtune_dist_worker sharded ROWS K DTYPE [LAYOUT]  (DTYPE float32 | float64;
//                                                      LAYOUT alone | mixed)
//   kvtune_dist_worker finetune RECIPE OUT STOP_AFTER RESUME
//   kvtune_dist_worker sharded-limit ROWS LIMIT_MB
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>

#include <torch/torch.h>

#include "attention/knn_attention.h"
#include "attention/sharded_attention.h"
#include "common/check.h"
#include "common/communicator.h"
#include "common/launch_settings.h"
#include "common/resources.h"
#include "common/threads.h"
#include "index/key_index.h"
#include "train/recipe_io.h"
#include "train/train_loop.h"
#include "train/trainer.h"

namespace kvtune {
namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED: %s\n", world().rank(), what.c_str());
    ++failures;
  }
}

// The collectives against what they must give, from data every rank can compute.
void collectives() {
  Communicator& c = world();
  const int W = c.size(), me = c.rank();
  // All-reduce: sum over ranks of (rank + 1) * [1, 2, 3].
  auto t = torch::tensor({1.0, 2.0, 3.0}, torch::kFloat64) * (me + 1);
  c.allreduce_sum(t, "test");
  const double tri = W * (W + 1) / 2.0;
  expect(torch::equal(t, torch::tensor({tri, 2 * tri, 3 * tri}, torch::kFloat64)), "allreduce");
  auto ints = torch::full({4}, int64_t{me}, torch::kInt64);
  c.allreduce_sum(ints, "test");
  expect(ints[0].item<int64_t>() == W * (W - 1) / 2, "allreduce int64");
  // All-gather of rank r's r + 1 rows holding r.
  std::vector<int64_t> counts;
  const auto rows = torch::full({me + 1, 2}, double(me), torch::kFloat64);
  const auto all = c.allgather_rows(rows, "test", &counts);
  std::vector<torch::Tensor> want;
  for (int r = 0; r < W; ++r) want.push_back(torch::full({r + 1, 2}, double(r), torch::kFloat64));
  expect(torch::equal(all, torch::cat(want)), "allgather_rows values");
  for (int r = 0; r < W; ++r) expect(counts[r] == r + 1, "allgather_rows counts");
  // An empty contribution.
  const auto none = c.allgather_rows(me == 0 ? torch::empty({0, 2}) : torch::ones({1, 2}), "test");
  expect(none.size(0) == W - 1, "allgather_rows with an empty rank");
  // All-to-all: rank s sends rank r (r + 1) rows holding 100 s + r.
  std::vector<int64_t> send_counts;
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < W; ++r) {
    send_counts.push_back(r + 1);
    parts.push_back(torch::full({r + 1, 3}, double(100 * me + r), torch::kFloat32));
  }
  std::vector<int64_t> got;
  const auto recv = c.alltoall_rows(torch::cat(parts), send_counts, &got, "test");
  std::vector<torch::Tensor> expected;
  for (int s = 0; s < W; ++s) {
    expect(got[s] == me + 1, "alltoall counts");
    expected.push_back(torch::full({me + 1, 3}, double(100 * s + me), torch::kFloat32));
  }
  expect(torch::equal(recv, torch::cat(expected)), "alltoall values");
  // Broadcast from the last rank.
  auto b = torch::full({2}, double(me), torch::kFloat64);
  c.broadcast(b, W - 1, "test");
  expect(b[0].item<double>() == W - 1, "broadcast");
  c.barrier();
  // The payload counters: this rank's share of each collective.
  expect(c.bytes_sent().at("test") > 0, "bytes_sent counts the traffic");
}

// A sharded bank against the same bank whole: ids, scores and outputs exactly equal; query and
// row gradients equal to float64 rounding (float64) or float32 rounding (float32). LAYOUT
// "alone": the split bank only; "mixed": a whole bank of 6 rows before it and one of 9 rows
// after it (every bank trainable), as a memory layer with a domain bank beside its base bank.
// A whole bank's row gradients are this rank's own; summed over ranks (all-reduce) they must
// equal the one-process gradients.
void sharded(int64_t rows, int64_t k, const std::string& dtype_name, const std::string& layout) {
  Communicator& c = world();
  const int W = c.size(), me = c.rank();
  const auto dtype = dtype_name == "float64" ? torch::kFloat64 : torch::kFloat32;
  const int64_t dk = 8, dv = 5;
  torch::manual_seed(7);  // every rank draws the same whole banks and every rank's queries
  auto unit = [&](int64_t n) {
    return torch::nn::functional::normalize(torch::randn({n, dk}, torch::kFloat64),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1))
        .to(dtype);
  };
  // Bank sizes in order; `split` is the one spread over the ranks.
  const std::vector<int64_t> sizes =
      layout == "mixed" ? std::vector<int64_t>{6, rows, 9} : std::vector<int64_t>{rows};
  const int split = layout == "mixed" ? 1 : 0;
  std::vector<torch::Tensor> keys, values;
  for (const int64_t n : sizes) {
    keys.push_back(unit(n));
    values.push_back(torch::randn({n, dv}, torch::kFloat64).to(dtype));
  }
  // Two equal keys, so a tie at the top-k boundary has to be broken by id; in "mixed", a key of
  // the split bank tied with one of the whole bank after it as well.
  keys[split][rows - 1].copy_(keys[split][0]);
  if (layout == "mixed") keys[2][4].copy_(keys[split][0]);
  std::vector<int64_t> q_rows;
  std::vector<torch::Tensor> qs;
  for (int r = 0; r < W; ++r) {
    q_rows.push_back(3 + 2 * r);
    qs.push_back(torch::randn({q_rows.back(), dk}, torch::kFloat64).to(dtype));
  }
  qs[0][0].copy_(keys[split][0]);  // a query whose best keys are the tied ones
  const auto weights =
      torch::randn({std::accumulate(q_rows.begin(), q_rows.end(), int64_t{0}), dv}, torch::kFloat64)
          .to(dtype);
  KnnAttentionOptions o;
  o.estimator = "topk";
  o.backward = "exact";
  o.k = k;

  // Reference: the banks whole, every rank's queries, one process.
  std::vector<torch::Tensor> ref_keys, ref_values;
  std::vector<BankView> ref_views;
  for (size_t b = 0; b < sizes.size(); ++b) {
    ref_keys.push_back(keys[b].clone().set_requires_grad(true));
    ref_values.push_back(values[b].clone().set_requires_grad(true));
    ref_views.push_back(BankView{ref_keys.back(), ref_values.back(), nullptr, "whole"});
  }
  auto ref_q = torch::cat(qs).set_requires_grad(true);
  const auto ref = knn_attention(ref_q, ref_views, o);
  (ref.output * weights).sum().backward();

  // Sharded: this rank's rows of the split bank and its own index over them; the others whole.
  const RowShare range = shard_range(rows, me, W);
  std::vector<torch::Tensor> my_keys, my_values;
  ShardedBanks sb;
  sb.sharded = split;
  sb.shard_offset = range.begin;
  sb.sharded_rows = rows;
  for (size_t b = 0; b < sizes.size(); ++b) {
    const bool is_split = static_cast<int>(b) == split;
    const auto kb = is_split ? keys[b].narrow(0, range.begin, range.count) : keys[b];
    const auto vb = is_split ? values[b].narrow(0, range.begin, range.count) : values[b];
    my_keys.push_back(kb.clone().set_requires_grad(true));
    my_values.push_back(vb.clone().set_requires_grad(true));
    sb.banks.push_back(BankView{my_keys.back(), my_values.back(), nullptr, "bank"});
  }
  const auto keys32 = my_keys[split].detach().to(torch::kFloat32).contiguous();
  KeyIndex index(dk, IndexConfig{});
  index.build(keys32.data_ptr<float>(), range.count);
  sb.banks[split].index = &index;
  int64_t q_begin = 0;
  for (int r = 0; r < me; ++r) q_begin += q_rows[r];
  auto q = qs[me].clone().set_requires_grad(true);
  const auto res = sharded_knn_attention(q, sb, o, c);
  (res.output * weights.narrow(0, q_begin, q_rows[me])).sum().backward();

  const auto mine = [&](const torch::Tensor& t) { return t.narrow(0, q_begin, q_rows[me]); };
  expect(torch::equal(res.ids, mine(ref.ids)), "ids equal the whole banks'");
  expect(torch::equal(res.scores, mine(ref.scores)), "scores equal the whole banks'");
  expect(torch::equal(res.output, mine(ref.output)), "outputs equal the whole banks'");
  const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
  auto dense = [](const torch::Tensor& t) {
    return t.defined() ? (t.is_sparse() ? t.to_dense() : t) : torch::Tensor();
  };
  auto close = [&](const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
    const double err =
        (dense(a).to(torch::kFloat64) - dense(b).to(torch::kFloat64)).abs().max().item<double>();
    expect(err <= tol, what + ": max |difference| " + std::to_string(err));
  };
  close(q.grad(), mine(ref_q.grad()), "query gradient");
  for (size_t b = 0; b < sizes.size(); ++b) {
    const std::string name = "bank " + std::to_string(b);
    if (static_cast<int>(b) == split) {
      close(my_keys[b].grad(), dense(ref_keys[b].grad()).narrow(0, range.begin, range.count),
            name + " key-row gradient");
      close(my_values[b].grad(), dense(ref_values[b].grad()).narrow(0, range.begin, range.count),
            name + " value-row gradient");
      continue;
    }
    for (auto* pair : {&my_keys, &my_values}) {
      auto g = dense((*pair)[b].grad());
      if (!g.defined()) g = torch::zeros_like((*pair)[b]);
      auto sum = g.contiguous().clone();
      c.allreduce_sum(sum, "test");
      const auto& ref_t = pair == &my_keys ? ref_keys[b] : ref_values[b];
      auto want = dense(ref_t.grad());
      if (!want.defined()) want = torch::zeros_like(ref_t);
      close(sum, want, name + (pair == &my_keys ? " key" : " value") + "-row gradient, summed");
    }
  }
}

// Block b (kBlock rows) of a large bank, the same on every rank and every call: unit keys
// [kBlock, dk] and values [kBlock, dv], float32.
constexpr int64_t kBlock = 1 << 16;
std::pair<torch::Tensor, torch::Tensor> bank_block(int64_t b, int64_t dk, int64_t dv) {
  auto g = at::detail::createCPUGenerator(static_cast<uint64_t>(1000 + b));
  auto keys = torch::randn({kBlock, dk}, g, torch::kFloat32);
  keys =
      torch::nn::functional::normalize(keys, torch::nn::functional::NormalizeFuncOptions().dim(1));
  return {keys, torch::randn({kBlock, dv}, g, torch::kFloat32)};
}

// A bank that no one process may hold: the process limits its own data segment to LIMIT_MB
// before anything is allocated, checks that the whole bank does not fit under it, then holds
// only its shard (drawn block by block) and searches it with the others. The reference is an
// exact float64 top-k over every block, streamed one block at a time (never the whole bank).
void sharded_limit(int64_t rows, int64_t limit_mb) {
  Communicator& c = world();
  const int W = c.size(), me = c.rank();
  const int64_t dk = 32, dv = 32, k = 8;
  KVT_CHECK(rows % kBlock == 0, "ROWS must be a multiple of ", kBlock);
  const int64_t bank_bytes = rows * (dk + dv) * 4;
  const int64_t limit = limit_mb << 20;
  KVT_CHECK(bank_bytes > limit, "the bank (", bank_bytes >> 20, " MiB) fits under the limit");
  auto g = at::detail::createCPUGenerator(77);
  const int64_t per_rank = 4;
  const auto q_all = torch::randn({W * per_rank, dk}, g, torch::kFloat32);
  // Reference, before the limit (OpenBLAS spins when it cannot map its buffers): float64
  // scores of every block, the best k kept as the blocks stream by; never the whole bank.
  const auto q =
      torch::nn::functional::normalize(q_all.narrow(0, me * per_rank, per_rank),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1))
          .to(torch::kFloat64);
  const double scale = std::sqrt(static_cast<double>(dk));
  auto best_scores = torch::full({per_rank, k}, -INFINITY, torch::kFloat64);
  auto best_ids = torch::full({per_rank, k}, int64_t{-1}, torch::kInt64);
  for (int64_t b = 0; b < rows / kBlock; ++b) {
    const auto bk = bank_block(b, dk, dv).first.to(torch::kFloat64);
    const auto s = torch::matmul(q, bk.t()) * scale;
    const auto ids = torch::arange(b * kBlock, (b + 1) * kBlock, torch::kInt64)
                         .unsqueeze(0)
                         .expand({per_rank, kBlock});
    const auto top = torch::cat({best_scores, s}, 1).topk(k, 1);
    best_ids = torch::cat({best_ids, ids}, 1).gather(1, std::get<1>(top));
    best_scores = std::get<0>(top);
  }
  rlimit rl{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
  KVT_CHECK(setrlimit(RLIMIT_DATA, &rl) == 0, "setrlimit failed");
  bool whole_fits = true;
  try {
    auto whole = torch::empty({rows, dk + dv}, torch::kFloat32);
    whole.fill_(0);
  } catch (const std::exception&) {
    whole_fits = false;
  }
  expect(!whole_fits, "the whole bank must not fit in one process under the limit");

  const RowShare range = shard_range(rows, me, W);
  auto keys = torch::empty({range.count, dk}, torch::kFloat32);
  auto values = torch::empty({range.count, dv}, torch::kFloat32);
  for (int64_t b = range.begin / kBlock; b * kBlock < range.begin + range.count; ++b) {
    const auto [bk, bv] = bank_block(b, dk, dv);
    const int64_t from = std::max(range.begin, b * kBlock);
    const int64_t to = std::min(range.begin + range.count, (b + 1) * kBlock);
    keys.narrow(0, from - range.begin, to - from).copy_(bk.narrow(0, from - b * kBlock, to - from));
    values.narrow(0, from - range.begin, to - from)
        .copy_(bv.narrow(0, from - b * kBlock, to - from));
  }
  KeyIndex index(dk, IndexConfig{});
  index.build(keys.data_ptr<float>(), range.count);
  KnnAttentionOptions o;
  o.k = k;
  torch::NoGradGuard no_grad;
  const auto res = sharded_knn_attention(
      q_all.narrow(0, me * per_rank, per_rank),
      ShardedBanks{{BankView{keys, values, &index, "shard"}}, 0, range.begin, rows}, o, c);
  expect(torch::equal(res.ids, best_ids), "ids equal the exact float64 top-k of the whole bank");
  const double err = (res.scores.to(torch::kFloat64) - best_scores).abs().max().item<double>();
  expect(err < 1e-5, "scores within float32 rounding of float64: " + std::to_string(err));
  std::printf(
      "rank %d: %lld of %lld rows (%lld MiB of a %lld MiB bank) under a %lld MiB limit, "
      "peak RSS %lld MiB\n",
      me, static_cast<long long>(range.count), static_cast<long long>(rows),
      static_cast<long long>(range.count * (dk + dv) * 4 >> 20),
      static_cast<long long>(bank_bytes >> 20), static_cast<long long>(limit_mb),
      static_cast<long long>(peak_rss_bytes() >> 20));
}

void finetune_run(const std::string& recipe, const std::string& out, int64_t stop_after,
                  bool resume) {
  const Recipe r = load_recipe(recipe, {}, std::string(KVTUNE_SOURCE_DIR) + "/configs");
  set_stop_after_for_testing(stop_after);
  finetune(r, out, resume);
}

}  // namespace
}  // namespace kvtune

int main(int argc, char** argv) {
  using namespace kvtune;
  try {
    set_num_threads(1);
    LaunchSettings s = launch_settings_from_env();
    s.timeout = std::chrono::seconds(60);
    set_world(Communicator::connect(s));
    const std::string what = argc > 1 ? argv[1] : "";
    if (what == "collectives") {
      collectives();
    } else if (what == "sharded" && (argc == 5 || argc == 6)) {
      sharded(std::stoll(argv[2]), std::stoll(argv[3]), argv[4], argc == 6 ? argv[5] : "alone");
    } else if (what == "sharded-limit" && argc == 4) {
      sharded_limit(std::stoll(argv[2]), std::stoll(argv[3]));
    } else if (what == "finetune" && argc == 6) {
      finetune_run(argv[2], argv[3], std::stoll(argv[4]), std::string(argv[5]) == "resume");
    } else {
      std::fprintf(stderr,
                   "usage: kvtune_dist_worker collectives | sharded ROWS K DTYPE [alone|mixed] | "
                   "finetune RECIPE OUT STOP_AFTER fresh|resume\n");
      return 2;
    }
    world().barrier();
    set_world(std::make_shared<Communicator>());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvtune_dist_worker: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}

// Sparse row-wise Adam: touched rows follow Adam exactly (against torch::optim::Adam on the
// same rows), untouched rows and their state do not move.
#include <gtest/gtest.h>

#include "test_util.h"
#include "train/sparse_row_adam.h"

namespace kvtune {
namespace {

TEST(SparseRowAdam, TouchedRowsFollowAdamUntouchedRowsStay) {
  torch::manual_seed(test::test_seed());
  const int64_t n = 50, d = 7;
  auto bank = torch::randn({n, d}, torch::kFloat64).requires_grad_(true);
  const auto start = bank.detach().clone();
  SparseRowAdamOptions o;
  o.lr = 0.05;
  SparseRowAdam opt({bank}, o);

  // Reference: one torch Adam per row, stepped only when its row has gradient. Row 3 is left
  // out of odd steps, so a global (not per-row) step count gives a different bias correction.
  const std::vector<int64_t> row_ids = {3, 10, 11};
  const auto rows = torch::tensor(row_ids, torch::kInt64);
  std::vector<torch::Tensor> ref;
  std::vector<std::unique_ptr<torch::optim::Adam>> ref_opt;
  for (int64_t r : row_ids) {
    ref.push_back(start[r].clone().requires_grad_(true));
    ref_opt.push_back(std::make_unique<torch::optim::Adam>(
        std::vector<torch::Tensor>{ref.back()},
        torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps)));
  }
  for (int step = 0; step < 6; ++step) {
    const auto g = torch::randn({3, d}, torch::kFloat64);
    const bool with_row3 = step % 2 == 0;
    // Rows in a shuffled order with one duplicate: the gradient of a duplicated row sums.
    const auto idx = with_row3 ? torch::tensor({11, 3, 10, 3}, torch::kInt64)
                               : torch::tensor({11, 10}, torch::kInt64);
    const auto vals = with_row3 ? torch::stack({g[2], g[0] * 0.25, g[1], g[0] * 0.75})
                                : torch::stack({g[2], g[1]});
    bank.mutable_grad() = torch::sparse_coo_tensor(idx.unsqueeze(0), vals, {n, d});
    const auto touched = opt.step();
    EXPECT_EQ(touched[0].numel(), with_row3 ? 3 : 2);
    for (int i = 0; i < 3; ++i) {
      if (i == 0 && !with_row3) continue;
      ref[i].mutable_grad() = g[i].clone();
      ref_opt[i]->step();
    }
  }
  EXPECT_LT(test::rel_error(bank.detach().index_select(0, rows), torch::stack(ref).detach()),
            1e-12);
  auto mask = torch::ones({n}, torch::kBool);
  mask.index_put_({rows}, false);
  EXPECT_TRUE(torch::equal(bank.detach().index({mask}), start.index({mask})));
  // Per-row step counts: how often each row had gradient, 0 elsewhere.
  const auto steps = opt.state()[2];
  EXPECT_EQ(steps[3].item<int64_t>(), 3);
  EXPECT_EQ(steps[10].item<int64_t>(), 6);
  EXPECT_EQ(steps.index({mask}).max().item<int64_t>(), 0);
}

}  // namespace
}  // namespace kvtune

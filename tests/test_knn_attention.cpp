// The kNN attention op: topk against a float64 dense reference, exact gradients, sparsity of
// bank gradients, and several banks searched as one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "attention/knn_attention.h"
#include "attention_test_util.h"
#include "common/check.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::rel_error;
using test::rel_tol;

using test::Banks;
using test::make_banks;
using test::unit_rows;

// Dense softmax attention in float64, written independently of the library.
torch::Tensor dense_reference(const torch::Tensor& q, const Banks& banks, double scale) {
  auto qd = q.to(torch::kFloat64);
  qd = qd / qd.norm(2, -1, true);
  std::vector<torch::Tensor> ks, vs;
  for (size_t i = 0; i < banks.keys.size(); ++i) {
    ks.push_back(banks.keys[i].to(torch::kFloat64));
    vs.push_back(banks.values[i].to(torch::kFloat64));
  }
  auto s = scale * qd.matmul(torch::cat(ks).t());
  return torch::softmax(s, -1).matmul(torch::cat(vs));
}

class TopkEqualsDense : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(TopkEqualsDense, WhenKCoversEveryKey) {
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const int64_t dk = 13, dv = 7, M = 5, H = 3;
  const auto banks = make_banks({37, 53}, dk, dv, dtype);
  const auto q = torch::randn({M, H, dk}, torch::kFloat64).to(dtype);
  const double scale = std::sqrt(double(dk));
  const auto ref = dense_reference(q, banks, scale);

  for (const std::string est : {"topk", "dense"}) {
    KnnAttentionOptions opts;
    opts.estimator = est;
    opts.k = 37 + 53;
    const auto r = knn_attention(q, banks.views(), opts);
    ASSERT_EQ(r.output.sizes(), (std::vector<int64_t>{M, H, dv}));
    ASSERT_EQ(r.ids.sizes(), (std::vector<int64_t>{M, H, 90}));
    EXPECT_LT(rel_error(r.output, ref), rel_tol(dtype)) << est;
  }
}

TEST_P(TopkEqualsDense, SmallKIsTheSoftmaxOverTheTopKSet) {
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const int64_t dk = 11, dv = 5, k = 7;
  const auto banks = make_banks({101}, dk, dv, dtype);
  const auto q = torch::randn({9, dk}, torch::kFloat64).to(dtype);
  KnnAttentionOptions opts;
  opts.k = k;
  opts.scale = 3.0;
  const auto r = knn_attention(q, banks.views(), opts);
  // Reference: full scores, keep the top k, softmax over them.
  auto qd = q.to(torch::kFloat64);
  qd = qd / qd.norm(2, -1, true);
  const auto s = 3.0 * qd.matmul(banks.keys[0].to(torch::kFloat64).t());
  const auto top = s.topk(k, -1);
  const auto p = torch::softmax(std::get<0>(top), -1);
  const auto v = banks.values[0].to(torch::kFloat64).index({std::get<1>(top)});
  const auto ref = (p.unsqueeze(-1) * v).sum(1);
  EXPECT_LT(rel_error(r.output, ref), rel_tol(dtype));
  EXPECT_TRUE(torch::equal(r.ids, std::get<1>(top)));
  EXPECT_LT(rel_error(r.scores, std::get<0>(top)), rel_tol(dtype));
}

// "dense" without autograd runs blocked (256 queries x 8192 keys per block, online softmax):
// several query blocks, key blocks and banks against the float64 reference, its top-k against
// the top-k of the full scores, and the same output with autograd on.
TEST_P(TopkEqualsDense, BlockedDenseEqualsTheReferenceAcrossBlocks) {
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const int64_t dk = 8, dv = 3, k = 5;
  const auto banks = make_banks({9000, 300, 8192}, dk, dv, dtype);
  const auto q = torch::randn({300, dk}, torch::kFloat64).to(dtype);
  KnnAttentionOptions opts;
  opts.estimator = "dense";
  opts.k = k;
  opts.scale = 6.0;
  const auto r = knn_attention(q, banks.views(), opts);
  EXPECT_LT(rel_error(r.output, dense_reference(q, banks, 6.0)), rel_tol(dtype));
  auto qd = q.to(torch::kFloat64);
  qd = qd / qd.norm(2, -1, true);
  std::vector<torch::Tensor> ks;
  for (const auto& key : banks.keys) ks.push_back(key.to(torch::kFloat64));
  const auto top = (6.0 * qd.matmul(torch::cat(ks).t())).topk(k, -1);
  EXPECT_TRUE(torch::equal(r.ids, std::get<1>(top)));
  EXPECT_LT(rel_error(r.scores, std::get<0>(top)), rel_tol(dtype));
  const auto with_grad = knn_attention(q.clone().requires_grad_(true), banks.views(), opts);
  EXPECT_LT(rel_error(with_grad.output.detach(), r.output), rel_tol(dtype));
  // k above the number of keys: padded with -1 ids and -inf scores, as with autograd.
  const auto small = make_banks({4}, dk, dv, dtype);
  opts.k = 6;
  const auto padded = knn_attention(q.narrow(0, 0, 2), small.views(), opts);
  EXPECT_EQ(padded.ids[0][5].item<int64_t>(), -1);
  EXPECT_TRUE(std::isinf(padded.scores[1][4].item<double>()));
  EXPECT_LT(rel_error(padded.output, dense_reference(q.narrow(0, 0, 2), small, 6.0)),
            rel_tol(dtype));
}

INSTANTIATE_TEST_SUITE_P(Attention, TopkEqualsDense,
                         ::testing::Values(torch::kFloat64, torch::kFloat32));

// The same op written with autograd on a dense computation restricted to the given top-k ids.
struct Restricted {
  torch::Tensor q, keys, values, out;
};
Restricted restricted_dense(const torch::Tensor& q_raw, const torch::Tensor& keys,
                            const torch::Tensor& values, const torch::Tensor& ids, double scale) {
  Restricted r;
  r.q = q_raw.detach().clone().requires_grad_(true);
  r.keys = keys.detach().clone().requires_grad_(true);
  r.values = values.detach().clone().requires_grad_(true);
  const auto qu = r.q / r.q.norm(2, -1, true);
  const auto k = r.keys.index({ids});    // [R, k, dk]
  const auto v = r.values.index({ids});  // [R, k, dv]
  const auto s = scale * (k * qu.unsqueeze(1)).sum(-1);
  r.out = (torch::softmax(s, -1).unsqueeze(-1) * v).sum(1);
  return r;
}

TEST(AttentionGradients, TopkMatchesAutogradOnTheSameSet) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(test::test_seed());
    const int64_t dk = 9, dv = 6, R = 17, k = 5;
    const double scale = 2.5;
    auto keys = unit_rows(61, dk, dtype).requires_grad_(true);
    auto values = torch::randn({61, dv}, torch::kFloat64).to(dtype).requires_grad_(true);
    auto q = torch::randn({R, dk}, torch::kFloat64).to(dtype).requires_grad_(true);
    const auto dout = torch::randn({R, dv}, torch::kFloat64).to(dtype);

    KnnAttentionOptions opts;
    opts.k = k;
    opts.scale = scale;
    const auto r = knn_attention(q, {{keys, values, nullptr, "trainable"}}, opts);
    (r.output * dout).sum().backward();

    auto ref = restricted_dense(q, keys, values, r.ids, scale);
    (ref.out * dout).sum().backward();
    const double tol = rel_tol(dtype);
    EXPECT_LT(rel_error(r.output, ref.out), tol);
    EXPECT_LT(rel_error(q.grad(), ref.q.grad()), tol);
    ASSERT_TRUE(keys.grad().is_sparse());
    ASSERT_TRUE(values.grad().is_sparse());
    EXPECT_LT(rel_error(keys.grad().to_dense(), ref.keys.grad()), tol);
    EXPECT_LT(rel_error(values.grad().to_dense(), ref.values.grad()), tol);
  }
}

TEST(AttentionGradients, TopkMatchesFiniteDifferencesInFloat64) {
  torch::manual_seed(test::test_seed());
  const int64_t dk = 7, dv = 4, R = 6, k = 4;
  const double scale = 2.0, eps = 1e-6;
  auto keys = unit_rows(29, dk, torch::kFloat64);
  auto values = torch::randn({29, dv}, torch::kFloat64);
  auto q = torch::randn({R, dk}, torch::kFloat64);
  const auto dout = torch::randn({R, dv}, torch::kFloat64);
  KnnAttentionOptions opts;
  opts.k = k;
  opts.scale = scale;

  auto loss = [&](const torch::Tensor& qq, const torch::Tensor& kk, const torch::Tensor& vv) {
    return (knn_attention(qq, {{kk, vv, nullptr, ""}}, opts).output * dout).sum().item<double>();
  };
  auto qg = q.clone().requires_grad_(true);
  auto kg = keys.clone().requires_grad_(true);
  auto vg = values.clone().requires_grad_(true);
  const auto r = knn_attention(qg, {{kg, vg, nullptr, ""}}, opts);
  (r.output * dout).sum().backward();
  const auto dk_dense = kg.grad().to_dense();
  const auto dv_dense = vg.grad().to_dense();

  // Central differences on every query coordinate and on the coordinates of retrieved rows.
  // Keys are perturbed without renormalizing: the op's key gradient is d/dk of c <q, k>.
  // A finite difference is not float64-exact: with eps = 1e-6 its rounding error is about
  // 1e-16 |loss| / eps ~ 1e-10 and its truncation error about eps^2 ~ 1e-12 (measured worst
  // 1.1e-9 over 31 seeds), so the tolerance is 1e-8, not 1e-12.
  auto check = [&](torch::Tensor& x, const torch::Tensor& analytic, const char* what) {
    auto flat = x.view({-1});
    double worst = 0;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double a = analytic.reshape({-1})[i].item<double>();
      const double orig = flat[i].item<double>();
      flat[i] = orig + eps;
      const double up = loss(q, keys, values);
      flat[i] = orig - eps;
      const double down = loss(q, keys, values);
      flat[i] = orig;
      worst = std::max(worst, std::abs((up - down) / (2 * eps) - a));
    }
    std::cout << "[ fd error ] " << what << " " << worst << "\n";
    EXPECT_LT(worst, 1e-8) << what;
  };
  check(q, qg.grad(), "queries");
  check(values, dv_dense, "values");
  check(keys, dk_dense, "keys");
}

TEST(AttentionGradients, FrozenBanksGetNoneTrainableOnlyRetrievedRows) {
  torch::manual_seed(test::test_seed());
  const int64_t dk = 8, dv = 5, k = 6;
  auto frozen_k = unit_rows(40, dk, torch::kFloat32);
  auto frozen_v = torch::randn({40, dv});
  auto train_k = unit_rows(33, dk, torch::kFloat32).requires_grad_(true);
  auto train_v = torch::randn({33, dv}).requires_grad_(true);
  auto q = torch::randn({4, 3, dk}).requires_grad_(true);
  KnnAttentionOptions opts;
  opts.k = k;
  const auto r = knn_attention(
      q, {{frozen_k, frozen_v, nullptr, "base"}, {train_k, train_v, nullptr, "domain"}}, opts);
  r.output.pow(2).sum().backward();

  EXPECT_FALSE(frozen_k.grad().defined());
  EXPECT_FALSE(frozen_v.grad().defined());
  ASSERT_TRUE(train_k.grad().defined());
  ASSERT_TRUE(train_k.grad().is_sparse());
  std::set<int64_t> retrieved;
  const auto ids = r.ids.reshape({-1});
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t id = ids[i].item<int64_t>();
    if (id >= 40) retrieved.insert(id - 40);
  }
  ASSERT_FALSE(retrieved.empty()) << "the test needs some hits in the trainable bank";
  for (const auto& grad : {train_k.grad(), train_v.grad()}) {
    const auto rows = grad.coalesce().indices().reshape({-1});
    std::set<int64_t> got;
    for (int64_t i = 0; i < rows.numel(); ++i) got.insert(rows[i].item<int64_t>());
    EXPECT_EQ(got, retrieved);
    // The dense form is zero outside the retrieved rows.
    auto dense = grad.to_dense();
    for (int64_t row = 0; row < 33; ++row) {
      if (!retrieved.count(row)) EXPECT_EQ(dense[row].abs().sum().item<float>(), 0.0f);
    }
  }
}

// A learned scale: the same output as that scale fixed, and dL/dc against central differences
// of the loss in c (float64), for the truncated and the dense op.
TEST(AttentionGradients, LearnedScaleMatchesFiniteDifferences) {
  torch::manual_seed(static_cast<int64_t>(test::test_seed()));
  const auto banks = make_banks({40, 25}, 8, 5, torch::kFloat64);
  const auto q = torch::randn({3, 2, 8}, torch::kFloat64);
  const auto w = torch::randn({3, 2, 5}, torch::kFloat64);
  for (const std::string est : {"topk", "dense"}) {
    KnnAttentionOptions o;
    o.estimator = est;
    o.backward = est == "topk" ? "exact" : "dense";
    o.k = 6;
    const double c = 3.7;
    auto loss = [&](double scale) {
      KnnAttentionOptions fixed = o;
      fixed.scale = scale;
      return (knn_attention(q, banks.views(), fixed).output * w).sum().item<double>();
    };
    auto log_c = torch::tensor(std::log(c), torch::kFloat64).set_requires_grad(true);
    const auto out = knn_attention(q, banks.views(), o, log_c.exp());
    KnnAttentionOptions fixed = o;
    fixed.scale = c;
    EXPECT_LT(rel_error(out.output.detach(), knn_attention(q, banks.views(), fixed).output), 1e-14)
        << est;
    (out.output * w).sum().backward();
    const double h = 1e-5;
    const double fd = (loss(c * std::exp(h)) - loss(c * std::exp(-h))) / (2 * h);  // d/d log c
    std::cout << "[ fd error ] " << est << " " << std::abs(log_c.grad().item<double>() - fd)
              << " (fd " << fd << ")\n";
    // A central difference with h = 1e-5: rounding ~1e-16 / h ~ 1e-11, truncation ~h^2 ~ 1e-10
    // (measured worst 2e-10 over 31 seeds), so 1e-8, not the 1e-12 of an exact comparison.
    EXPECT_NEAR(log_c.grad().item<double>(), fd, 1e-8 * std::max(1.0, std::abs(fd))) << est;
    EXPECT_GT(std::abs(fd), 1e-3) << est << ": the check needs a loss that depends on c";
  }
  KnnAttentionOptions o;
  EXPECT_THROW(knn_attention(q, banks.views(), o, torch::tensor(-1.0, torch::kFloat64)), Error);
}

TEST(AttentionBanks, TwoBanksSearchedTogetherEqualOneBankHoldingBoth) {
  torch::manual_seed(test::test_seed());
  const int64_t dk = 10, dv = 6;
  const auto a = make_banks({45}, dk, dv, torch::kFloat32);
  const auto b = make_banks({31}, dk, dv, torch::kFloat32);
  const auto both_k = torch::cat({a.keys[0], b.keys[0]}).contiguous();
  const auto both_v = torch::cat({a.values[0], b.values[0]}).contiguous();
  const auto q = torch::randn({7, 2, dk});
  for (int64_t k : {1, 8, 40}) {
    KnnAttentionOptions opts;
    opts.k = k;
    const auto split = knn_attention(
        q, {{a.keys[0], a.values[0], nullptr, "a"}, {b.keys[0], b.values[0], nullptr, "b"}}, opts);
    const auto joined = knn_attention(q, {{both_k, both_v, nullptr, "ab"}}, opts);
    EXPECT_TRUE(torch::equal(split.ids, joined.ids)) << "k=" << k;
    EXPECT_LT(rel_error(split.output, joined.output), 1e-6) << "k=" << k;
    EXPECT_LT(rel_error(split.scores, joined.scores), 1e-6) << "k=" << k;
  }
}

TEST(AttentionInputs, MismatchesAreClearErrors) {
  const auto keys = unit_rows(10, 4, torch::kFloat32);
  const auto values = torch::randn({10, 3});
  KnnAttentionOptions opts;
  opts.k = 3;
  auto msg = [&](const torch::Tensor& q, std::vector<BankView> banks, KnnAttentionOptions o) {
    try {
      knn_attention(q, banks, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using ::testing::HasSubstr;
  EXPECT_THAT(msg(torch::randn({2, 5}), {{keys, values, nullptr, "x"}}, opts),
              HasSubstr("bank 'x' has key dim 4 but the queries have d_k = 5"));
  EXPECT_THAT(msg(torch::randn({2, 4}, torch::kFloat64), {{keys, values, nullptr, "x"}}, opts),
              HasSubstr("convert one side"));
  EXPECT_THAT(msg(torch::randn({2, 4}), {}, opts), HasSubstr("at least one bank"));
  auto bad = opts;
  bad.estimator = "nope";
  EXPECT_THAT(msg(torch::randn({2, 4}), {{keys, values, nullptr, "x"}}, bad),
              HasSubstr("unknown estimator 'nope': choose one of dense, gumbel, topk, topk+tail"));
  bad = opts;
  bad.k = 0;
  EXPECT_THAT(msg(torch::randn({2, 4}), {{keys, values, nullptr, "x"}}, bad),
              HasSubstr("k must be positive"));
}

}  // namespace
}  // namespace kvtune

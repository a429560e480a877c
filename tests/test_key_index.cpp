// Search over unit keys: Flat is exact and copy-free, approximate indexes reach their recall at
// the shipped parameters, indexes save and load through faiss, stale or foreign files are refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>

#include "bank/indexed_bank.h"
#include "common/check.h"
#include "index/index_config_yaml.h"
#include "index/key_index.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::HasSubstr;

torch::Tensor unit_rows(int64_t n, int64_t d) {
  auto x = torch::randn({n, d});
  return (x / x.norm(2, 1, true)).contiguous();
}

TEST(IndexFlat, EqualsBruteForceAndSeesKeyUpdatesWithoutRebuild) {
  torch::manual_seed(test::test_seed());
  const int64_t n = 517, d = 19, nq = 23, k = 9;
  auto keys = unit_rows(n, d);
  const auto q = unit_rows(nq, d);
  KeyIndex index(d, IndexConfig{});
  index.build(keys.data_ptr<float>(), n);
  EXPECT_EQ(index.memory_bytes(), 0);

  auto check = [&] {
    auto scores = torch::empty({nq, k});
    auto ids = torch::empty({nq, k}, torch::kInt64);
    index.search(q.data_ptr<float>(), nq, k, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
    const auto ref = q.matmul(keys.t()).topk(k, 1);
    EXPECT_TRUE(torch::equal(ids, std::get<1>(ref)));
    EXPECT_LT(test::rel_error(scores, std::get<0>(ref)), 1e-5);
  };
  check();
  // A trainable bank moves its keys in place: the next search sees them, no rebuild, no copy.
  keys.copy_(unit_rows(n, d));
  check();
}

TEST(IndexFlat, FewerKeysThanKPadsWithMinusOne) {
  const auto keys = unit_rows(3, 4);
  KeyIndex index(4, IndexConfig{});
  index.build(keys.data_ptr<float>(), 3);
  auto scores = torch::empty({1, 5});
  auto ids = torch::empty({1, 5}, torch::kInt64);
  index.search(keys.data_ptr<float>(), 1, 5, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
  EXPECT_EQ(ids[0][3].item<int64_t>(), -1);
  EXPECT_TRUE(std::isinf(scores[0][4].item<float>()));
}

// Recall@k of an index against exact search, on keys with cluster structure like trained banks
// (and queries near them), and on structureless random keys.
double recall(const IndexConfig& config, const torch::Tensor& keys, const torch::Tensor& q,
              int64_t k) {
  const int64_t n = keys.size(0), d = keys.size(1), nq = q.size(0);
  KeyIndex exact(d, IndexConfig{});
  exact.build(keys.data_ptr<float>(), n);
  KeyIndex approx(d, config);
  approx.build(keys.data_ptr<float>(), n);
  auto s = torch::empty({nq, k});
  auto truth = torch::empty({nq, k}, torch::kInt64);
  auto got = torch::empty({nq, k}, torch::kInt64);
  exact.search(q.data_ptr<float>(), nq, k, s.data_ptr<float>(), truth.data_ptr<int64_t>());
  approx.search(q.data_ptr<float>(), nq, k, s.data_ptr<float>(), got.data_ptr<int64_t>());
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    std::set<int64_t> t(truth[i].data_ptr<int64_t>(), truth[i].data_ptr<int64_t>() + k);
    for (int64_t j = 0; j < k; ++j) hits += t.count(got[i][j].item<int64_t>());
  }
  return double(hits) / double(nq * k);
}

// Unit rows scattered around `centers` (one centre per row, drawn uniformly).
torch::Tensor around(const torch::Tensor& centers, int64_t n, double spread) {
  const int64_t d = centers.size(1);
  const auto which = torch::randint(centers.size(0), {n}, torch::kInt64);
  auto x = centers.index_select(0, which) + spread * torch::randn({n, d}) / std::sqrt(double(d));
  return (x / x.norm(2, 1, true)).contiguous();
}

IndexConfig shipped_config(const std::string& name) {
  return load_index_config(test::source_dir() + "/configs/index/" + name + ".yaml");
}

TEST(IndexRecall, ShippedIvfAndHnswReachPointNineAgainstFlat) {
  torch::manual_seed(test::test_seed());
  const int64_t n = 30000, d = 32, nq = 300, k = 32;
  // Clustered keys, and queries drawn near the same clusters (the case IVF lists are made for).
  const auto centers = unit_rows(512, d);
  const auto clustered = around(centers, n, 0.8);
  const auto q_clustered = around(centers, nq, 0.8);
  const auto random = unit_rows(n, d);
  const auto q_random = unit_rows(nq, d);
  for (const std::string name : {"ivf", "hnsw"}) {
    const auto config = shipped_config(name);
    const double rc = recall(config, clustered, q_clustered, k);
    const double rr = recall(config, random, q_random, k);
    std::cout << "[ recall   ] " << config.factory << " nprobe=" << config.nprobe
              << " efSearch=" << config.ef_search << ": clustered " << rc << ", random " << rr
              << "\n";
    EXPECT_GE(rc, 0.9) << name;
    EXPECT_GE(rr, 0.9) << name;
  }
}

// The config for large base banks at a quarter of the size it is measured at (2^20 keys of dim
// 64, docs/benchmarks.md): 2^18 keys of dim 32, 64 per list. Its file states recall@32 1.000 on
// clustered keys and 0.775 on random ones of dim 64 at 2^20; here, at dim 32, it measured 0.999
// and 0.947 (seed 1). Over 6400 neighbours the recall's standard error is under 0.005, so the
// bounds below leave 20 of them for the random keys: a false alarm is not a practical risk.
TEST(IndexRecall, ShippedLargeBankConfigReachesItsStatedRecall) {
  torch::manual_seed(test::test_seed());
  const int64_t n = int64_t{1} << 18, d = 32, nq = 200, k = 32;
  const auto config = shipped_config("ivf-large");
  const auto centers = unit_rows(4096, d);
  const auto clustered = around(centers, n, 0.8);
  const auto q_clustered = around(centers, nq, 0.8);
  const auto random = unit_rows(n, d);
  const auto q_random = unit_rows(nq, d);
  const double rc = recall(config, clustered, q_clustered, k);
  const double rr = recall(config, random, q_random, k);
  std::cout << "[ recall   ] " << config.factory << " nprobe=" << config.nprobe << ": clustered "
            << rc << ", random " << rr << "\n";
  EXPECT_GE(rc, 0.98);
  EXPECT_GE(rr, 0.85);
}

// faiss 1.7.3 builds the inverted multi-index only in L2; over unit keys L2 ranks as the inner
// product does, and the scores come back as inner products. With every cell probed the search is
// exhaustive, so ids and scores must equal the exact inner-product top-k (float64 reference).
TEST(IndexMultiIndex, AllCellsProbedEqualsExactInnerProductAndSurvivesSaveLoad) {
  torch::manual_seed(test::test_seed());
  const int64_t n = 5000, d = 16, nq = 40, k = 10;
  const auto keys = unit_rows(n, d);
  // Queries of several norms: the conversion from L2 must not assume unit queries.
  const auto q = (unit_rows(nq, d) * (0.5 + torch::rand({nq, 1}) * 2)).contiguous();
  IndexConfig config;
  config.factory = "IMI2x5,Flat";
  config.nprobe = 1024;  // all 32 x 32 cells
  KeyIndex index(d, config);
  index.build(keys.data_ptr<float>(), n);
  const auto ref = q.to(torch::kFloat64).matmul(keys.to(torch::kFloat64).t()).topk(k, 1);
  auto check = [&](const KeyIndex& searched) {
    auto scores = torch::empty({nq, k});
    auto ids = torch::empty({nq, k}, torch::kInt64);
    searched.search(q.data_ptr<float>(), nq, k, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
    EXPECT_TRUE(torch::equal(ids, std::get<1>(ref)));
    EXPECT_LT((scores.to(torch::kFloat64) - std::get<0>(ref)).abs().max().item<double>(), 1e-5);
  };
  check(index);
  test::TempDir dir;
  index.save(dir.file("imi.faiss"));
  check(KeyIndex::load(dir.file("imi.faiss"), keys.data_ptr<float>(), n, d, config));
  // With few cells probed it is approximate: fewer candidates, but still ranked by inner product.
  config.nprobe = 16;
  const auto few = KeyIndex::load(dir.file("imi.faiss"), keys.data_ptr<float>(), n, d, config);
  auto scores = torch::empty({nq, k});
  auto ids = torch::empty({nq, k}, torch::kInt64);
  few.search(q.data_ptr<float>(), nq, k, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
  for (int64_t i = 0; i < nq; ++i) {
    for (int64_t j = 0; j < k && ids[i][j].item<int64_t>() >= 0; ++j) {
      const double exact =
          q[i].to(torch::kFloat64).dot(keys[ids[i][j]].to(torch::kFloat64)).item<double>();
      EXPECT_NEAR(scores[i][j].item<double>(), exact, 1e-5);
      if (j > 0) EXPECT_GE(scores[i][j - 1].item<float>(), scores[i][j].item<float>());
    }
  }
}

// Only the multi-index may use L2: an IVF index in L2 over a flat quantizer (not what kvtune
// builds) would rank by distance where kvtune reads inner products.
TEST(IndexFile, AnL2IndexOtherThanTheMultiIndexIsRefused) {
  torch::manual_seed(test::test_seed());
  test::TempDir dir;
  const int64_t n = 500, d = 8;
  const auto keys = unit_rows(n, d);
  {
    faiss::IndexFlatL2 quantizer(d);
    faiss::IndexIVFFlat ivf(&quantizer, d, 4, faiss::METRIC_L2);
    ivf.train(n, keys.data_ptr<float>());
    ivf.add(n, keys.data_ptr<float>());
    faiss::write_index(&ivf, dir.file("l2.faiss").c_str());
  }
  try {
    KeyIndex::load(dir.file("l2.faiss"), keys.data_ptr<float>(), n, d, IndexConfig{});
    FAIL() << "an L2 IVF index was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("metric"));
  }
}

TEST(IndexFile, SaveLoadRoundTripAndRefusesForeignOrDamagedFiles) {
  torch::manual_seed(test::test_seed());
  test::TempDir dir;
  const int64_t n = 2000, d = 16, nq = 10, k = 5;
  auto keys = unit_rows(n, d);
  const auto q = unit_rows(nq, d);
  IndexConfig config;
  config.factory = "IVF16,Flat";
  config.nprobe = 4;
  KeyIndex index(d, config);
  index.build(keys.data_ptr<float>(), n);
  const auto path = dir.file("bank.faiss");
  index.save(path);
  const auto loaded = KeyIndex::load(path, keys.data_ptr<float>(), n, d, config);
  auto s1 = torch::empty({nq, k}), s2 = torch::empty({nq, k});
  auto i1 = torch::empty({nq, k}, torch::kInt64), i2 = torch::empty({nq, k}, torch::kInt64);
  index.search(q.data_ptr<float>(), nq, k, s1.data_ptr<float>(), i1.data_ptr<int64_t>());
  loaded.search(q.data_ptr<float>(), nq, k, s2.data_ptr<float>(), i2.data_ptr<int64_t>());
  EXPECT_TRUE(torch::equal(i1, i2));
  EXPECT_TRUE(torch::equal(s1, s2));

  auto message = [&](const std::string& p, int64_t n_bank, int64_t d_bank) {
    try {
      KeyIndex::load(p, keys.data_ptr<float>(), n_bank, d_bank, config);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(path, n - 1, d), HasSubstr("holds 2000 vectors but the bank has 1999"));
  EXPECT_THAT(message(path, n, d + 1), HasSubstr("belongs to another bank"));
  EXPECT_THAT(message(dir.file("missing.faiss"), n, d), HasSubstr("does not exist"));
  // A truncated copy and a text file.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir.file("cut.faiss"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  std::ofstream(dir.file("text.faiss")) << "not an index\n";
  EXPECT_THAT(message(dir.file("cut.faiss"), n, d), HasSubstr("rebuild it"));
  EXPECT_THAT(message(dir.file("text.faiss"), n, d), HasSubstr("not a faiss index"));
}

TEST(IndexConfigErrors, ParametersOfTheWrongIndexTypeAreRefused) {
  const auto keys = unit_rows(300, 8);
  IndexConfig config;
  config.factory = "HNSW16";
  config.nprobe = 4;
  KeyIndex index(8, config);
  try {
    index.build(keys.data_ptr<float>(), 300);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nprobe is a parameter of IVF indexes"));
  }
  config.factory = "IVF512,Flat";
  config.nprobe = 0;
  KeyIndex too_small(8, config);
  try {
    too_small.build(keys.data_ptr<float>(), 300);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("needs at least that many keys"));
  }
  config.factory = "NotAnIndex";
  KeyIndex bad(8, config);
  EXPECT_THROW(bad.build(keys.data_ptr<float>(), 300), Error);
}

TEST(IndexedBankFile, SaveLoadKeepsBankAndIndexAndTrainingRenormalizes) {
  test::TempDir dir;
  IndexConfig config;
  config.factory = "HNSW16";
  config.ef_search = 32;
  IndexedBank bank(make_random_bank("b", 500, 12, 6, 7, /*trainable=*/true), config);
  EXPECT_TRUE(bank.view().keys.requires_grad());
  const auto path = dir.file("b.h5");
  bank.save(path);
  const auto loaded = IndexedBank::load(path, IndexConfig{});
  EXPECT_EQ(loaded->index_config().factory, "HNSW16");
  EXPECT_TRUE(torch::equal(loaded->bank().keys, bank.bank().keys));
  EXPECT_TRUE(loaded->trainable());

  // after_update keeps touched keys unit norm.
  {
    torch::NoGradGuard g;
    bank.mutable_bank().keys.index({torch::indexing::Slice(0, 3)}).mul_(2.0);
  }
  bank.after_update(torch::arange(0, 3));
  const auto norms = bank.bank().keys.norm(2, 1);
  EXPECT_NEAR(norms.max().item<float>(), 1.0f, 1e-5);
  EXPECT_NEAR(norms.min().item<float>(), 1.0f, 1e-5);
}

}  // namespace
}  // namespace kvtune

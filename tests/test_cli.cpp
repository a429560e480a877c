// The kvtune program end to end: bank create / inspect / query, and its errors (non-zero exit,
// a message that names the problem).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "bank/bank_io.h"
#include "bank/tensor_file.h"
#include "cli_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::HasSubstr;

using test::kvtune;

TEST(Cli, VersionCreateInspectQuery) {
  test::TempDir dir;
  auto r = kvtune("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("kvtune 0."));

  const auto a = dir.file("a.h5"), b = dir.file("b.h5");
  r = kvtune("bank create --n 500 --key-dim 16 --value-dim 8 --seed 3 --out " + a);
  ASSERT_EQ(r.code, 0) << r.output;
  r = kvtune("bank create --n 300 --key-dim 16 --value-dim 8 --seed 4 --out " + b);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("b.faiss")));
  const auto c = dir.file("c.h5");
  r = kvtune("bank create --n 300 --key-dim 16 --value-dim 8 --index HNSW16 --out " + c);
  ASSERT_EQ(r.code, 0) << r.output;

  r = kvtune("bank inspect " + a);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("slots       500"));
  r = kvtune("bank inspect --json " + c);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"index_factory\": \"HNSW16\""));

  auto q = torch::randn({11, 16});
  write_tensors(dir.file("q.h5"), {{"queries", q}});
  r = kvtune("bank query " + a + " " + b + " --queries " + dir.file("q.h5") +
             " --k 900 --estimator topk --out " + dir.file("out.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  // k >= all keys: topk equals the dense softmax, which we compute here from the files.
  const auto ids = read_tensor(dir.file("out.h5"), "ids");
  const auto outputs = read_tensor(dir.file("out.h5"), "outputs");
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{11, 900}));
  const auto ba = read_bank(a), bb = read_bank(b);
  const auto keys = torch::cat({ba.keys, bb.keys}).to(torch::kFloat64);
  const auto values = torch::cat({ba.values, bb.values}).to(torch::kFloat64);
  auto qd = q.to(torch::kFloat64);
  qd = qd / qd.norm(2, 1, true);
  const auto ref = torch::softmax(4.0 * qd.matmul(keys.t()), 1).matmul(values);
  EXPECT_LT(test::rel_error(outputs, ref), 1e-5);
  EXPECT_EQ(
      ids.index({torch::indexing::Slice(), torch::indexing::Slice(800, 900)}).max().item<int64_t>(),
      -1);
  // The forward-only sampled estimators run from the command line too (with their defaults).
  for (const std::string est : {"gumbel", "topk+tail"}) {
    r = kvtune("bank query " + a + " " + b + " --queries " + dir.file("q.h5") +
               " --k 20 --estimator " + est + " --out " + dir.file("s.h5"));
    ASSERT_EQ(r.code, 0) << est << ": " << r.output;
    EXPECT_EQ(read_tensor(dir.file("s.h5"), "outputs").sizes(), (std::vector<int64_t>{11, 8}));
  }
}

TEST(Cli, BadInputIsANonZeroExitWithAMessage) {
  test::TempDir dir;
  auto r = kvtune("bank create --n 0 --key-dim 16 --value-dim 8 --out " + dir.file("x.h5"));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("--n"));
  r = kvtune("bank inspect " + dir.file("missing.h5"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("missing.h5"));
  r = kvtune("bank create --n 10 --key-dim 4 --value-dim 4 --out " + dir.file("nofolder/x.h5"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));
  ASSERT_EQ(kvtune("bank create --n 50 --key-dim 8 --value-dim 4 --out " + dir.file("a.h5")).code,
            0);
  write_tensors(dir.file("q.h5"), {{"queries", torch::randn({3, 7})}});
  r = kvtune("bank query " + dir.file("a.h5") + " --queries " + dir.file("q.h5") + " --out " +
             dir.file("o.h5") + " --k 5");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("key dim 8 but the queries have d_k = 7"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.h5")));
  r = kvtune("bank query " + dir.file("a.h5") + " --queries " + dir.file("q.h5") + " --out " +
             dir.file("o.h5") + " --estimator magic");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("unknown estimator 'magic'"));
  r = kvtune("frobnicate");
  EXPECT_NE(r.code, 0);
}

}  // namespace
}  // namespace kvtune

namespace kvtune {
namespace {

TEST(Cli, EvalAndCompareRefuseBadArguments) {
  test::TempDir dir;
  auto r = kvtune("eval --model " + dir.file("missing") + " --data wn");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("missing"));
  r = kvtune("eval --data wn");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("--model"));
  r = kvtune("compare " + dir.file("none.yaml"));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("none.yaml"));
  r = kvtune("compare " + test::source_dir() + "/recipes/foldoc.yaml --methods memory,adam --out " +
             dir.file("c"));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.output, HasSubstr("unknown method 'adam'"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("c")));
}

}  // namespace
}  // namespace kvtune

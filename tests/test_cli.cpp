// The kvtune program end to end: bank create / inspect / query, generate, remember, eval with
// several banks, and their errors (non-zero exit, a message that names the problem).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "bank/bank_io.h"
#include "bank/tensor_file.h"
#include "cli_test_util.h"
#include "model/byte_tokenizer.h"
#include "model/generate.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "test_util.h"
#include "train/remember.h"
#include "train/run_model.h"

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
  // --samples and --seed: topk+tail with the whole tail (780 = 800 - 20 keys) is the dense
  // softmax; gumbel with 4000 draws (groups 1) is within Monte Carlo error of it, the same seed
  // gives the same output and another seed another.
  auto query = [&](const std::string& options, const std::string& out) {
    const auto run = kvtune("bank query " + a + " " + b + " --queries " + dir.file("q.h5") +
                            " --k 20 " + options + " --out " + dir.file(out));
    EXPECT_EQ(run.code, 0) << options << ": " << run.output;
    return read_tensor(dir.file(out), "outputs").to(torch::kFloat64);
  };
  EXPECT_LT(test::rel_error(query("--estimator topk+tail --samples 780", "t.h5"), ref), 1e-5);
  const auto g1 = query("--estimator gumbel --samples 4000 --groups 1 --seed 5", "g1.h5");
  const auto g2 = query("--estimator gumbel --samples 4000 --groups 1 --seed 5", "g2.h5");
  const auto g3 = query("--estimator gumbel --samples 4000 --groups 1 --seed 6", "g3.h5");
  EXPECT_TRUE(torch::equal(g1, g2));
  EXPECT_FALSE(torch::equal(g1, g3));
  // Each entry within 5 Monte Carlo standard errors sd_P(v) / sqrt(4000) of the dense output.
  const auto probs = torch::softmax(4.0 * qd.matmul(keys.t()), 1);
  const auto var = probs.matmul(values.pow(2)) - ref.pow(2);
  const auto z = (g1 - ref).abs() / (var.clamp_min(1e-30) / 4000.0).sqrt();
  std::cout << "[ z        ] gumbel max |z| " << z.max().item<double>() << " over " << z.numel()
            << " entries\n";
  EXPECT_LT(z.max().item<double>(), 5.0);
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

namespace kvtune {
namespace {

// A micro model folder (tests/model_test_util.h) and three small texts.
class CliMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    const uint64_t seed = test::test_seed();
    save_model(dir_.file("model"), test::make_model(test::micro_config(), seed),
               test::micro_config(), ByteTokenizer());
    std::ofstream(dir_.file("a.txt")) << "The moon is made of cheese.\n\nCats can fly.\n";
    std::ofstream(dir_.file("b.txt")) << "Water boils at ten degrees.\n";
    std::ofstream held_out(dir_.file("eval.txt"));
    for (int i = 0; i < 12; ++i) held_out << "Paragraph number " << i << " says a few words.\n\n";
  }
  std::string model() const { return dir_.file("model"); }
  test::TempDir dir_;
};

// Each kvtune process costs about 0.7 s of libtorch start-up: the library tests cover the
// behaviour, these check that the program prints what the library computes.
TEST_F(CliMemory, RememberThenGenerateAndEvalWithSeveralBanks) {
  auto r = kvtune("remember --model " + model() + " --bank " + dir_.file("a.h5") + " --text " +
                  dir_.file("a.txt") + " --steps 2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("s per 1000 tokens remembered"));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("a.faiss")));
  ByteTokenizer tok;
  auto loaded = load_model(model());
  RememberOptions k_means;
  k_means.steps = 2;
  k_means.slots = 5;
  remember_file(loaded.model, tok, dir_.file("b.h5"), dir_.file("b.txt"), k_means);

  // Greedy with both banks: what greedy_continue gives the model with both attached.
  const std::string banks = " --banks " + dir_.file("a.h5") + "," + dir_.file("b.h5");
  r = kvtune("generate --model " + model() + banks + " --prompt 'Cats' --max-new-tokens 9");
  ASSERT_EQ(r.code, 0) << r.output;
  attach_bank_file(loaded.model, dir_.file("a.h5"));
  attach_bank_file(loaded.model, dir_.file("b.h5"));
  GenerateOptions g;
  g.max_new_tokens = 9;
  g.eos_id = tok.eos_id();
  g.pad_id = tok.pad_id();
  const auto prompt = tok.encode("Cats", true, false);
  EXPECT_EQ(r.output, "Cats" + tok.decode(greedy_continue(loaded.model, {prompt}, g)[0]) + "\n");
  // Sampled: what sample_continue gives for the same seed.
  r = kvtune("generate --model " + model() + banks +
             " --prompt 'Cats' --max-new-tokens 9 --temperature 1.2 --top-k 50 --seed 7");
  ASSERT_EQ(r.code, 0) << r.output;
  SamplingOptions s;
  s.temperature = 1.2;
  s.top_k = 50;
  s.seed = 7;
  EXPECT_EQ(r.output, "Cats" + tok.decode(sample_continue(loaded.model, {prompt}, g, s)[0]) + "\n");

  r = kvtune("eval --model " + model() + banks + " --data " + dir_.file("eval.txt") +
             " --held-out-fraction 0.5 --seq-len 16 --batches 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("eval.txt"));
}

TEST_F(CliMemory, BadArgumentsAreANonZeroExitWithAMessage) {
  // A bank written for another model (other base bank keys) is refused.
  auto other = test::make_model(test::micro_config(), test::test_seed() + 1);
  RememberOptions quick;
  quick.steps = 1;
  remember_file(other, ByteTokenizer(), dir_.file("other.h5"), dir_.file("b.txt"), quick);
  const std::string other_bytes = [&] {
    std::ifstream in(dir_.file("other.h5"), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto r = kvtune("remember --model " + model() + " --bank " + dir_.file("other.h5") + " --text " +
                  dir_.file("a.txt"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("was trained for model"));
  std::ifstream in(dir_.file("other.h5"), std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), other_bytes);

  std::ofstream(dir_.file("empty.txt")) << "\n\n";
  r = kvtune("remember --model " + model() + " --bank " + dir_.file("m.h5") + " --text " +
             dir_.file("empty.txt"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no text to remember"));
  r = kvtune("remember --model " + model() + " --bank " + dir_.file("m.h5") + " --text " +
             dir_.file("missing.txt"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing.txt does not exist"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("m.h5")));
  r = kvtune("generate --model " + model() + " --banks " + dir_.file("missing.h5") + " --prompt x");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing.h5"));
}

}  // namespace
}  // namespace kvtune

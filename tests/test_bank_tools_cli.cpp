// kvtune bank export | merge | compact | inspect on a small model folder, their errors (non-zero
// exit, a message naming the problem and the fix, no existing file damaged), usage counting, and
// the Python reader of docs/bank-format.md (tools/check-bank-python). The program is started a
// dozen times only (each start costs ~0.5 s); the rest calls the library functions it runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bank/bank_io.h"
#include "bank/bank_merge.h"
#include "bank/indexed_bank.h"
#include "bank/tensor_file.h"
#include "bank_test_util.h"
#include "cli_test_util.h"
#include "eval/bank_usage.h"
#include "model/byte_tokenizer.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "recipe_test_util.h"
#include "test_util.h"
#include "train/run_model.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::kvtune;
using test::read_bytes;
using test::write_bytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Files in `dir` whose name holds ".tmp.": left-over temporaries of a failed write.
int temporaries(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

// A folder shaped like a memory run's model: micro model, its base bank, and a domain bank that
// records the model's fingerprint; plus a small text corpus.
class BankTools : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto config = test::micro_config();
    auto model = test::make_model(config, 7);
    save_model(model_dir(), model, config, ByteTokenizer());
    fingerprint_ = new std::string(model_fingerprint(model));
    Bank d = make_random_bank("domain_0", 96, 8, 8, 11, false, 0.5);
    d.meta.model_fingerprint = *fingerprint_;
    d.meta.memory_layer = 0;
    IndexedBank(d, IndexConfig{}).save(model_dir() + "/domain_0.h5");
    std::string text;
    for (int i = 0; i < 80; ++i) {
      text += "Paragraph " + std::to_string(i) + " says something about topic " +
              std::to_string(i % 7) + " and its neighbours.\n\n";
    }
    test::write_text(file("corpus.txt"), text);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete fingerprint_;
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::string model_dir() { return dir_->file("run/model"); }

  // A copy of the model folder, to break one file of it.
  static std::string copy_model(const std::string& name) {
    const auto to = file(name);
    fs::create_directories(to);
    fs::copy(model_dir(), to, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
    return to;
  }
  // A bank for the same model, `n` slots.
  static std::string other_bank(const std::string& name, int64_t n, uint64_t seed) {
    Bank b = make_random_bank(name, n, 8, 8, seed, false, 0.5);
    b.meta.model_fingerprint = *fingerprint_;
    b.meta.memory_layer = 0;
    b.usage = torch::arange(n, torch::kInt64);
    IndexedBank(b, IndexConfig{}).save(file(name + ".h5"));
    return file(name + ".h5");
  }

  static test::TempDir* dir_;
  static std::string* fingerprint_;
};
test::TempDir* BankTools::dir_ = nullptr;
std::string* BankTools::fingerprint_ = nullptr;

TEST_F(BankTools, ExportCarriesTheModelsFingerprintAndLayer) {
  const auto r = kvtune("bank export --model " + model_dir() + " --out " + file("domain.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("domain bank 'domain_0', 96 slots, memory layer 0"));
  const Bank b = read_bank(file("domain.h5"));
  EXPECT_EQ(b.meta.model_fingerprint, *fingerprint_);
  EXPECT_EQ(b.meta.memory_layer, 0);
  EXPECT_TRUE(fs::is_regular_file(file("domain.faiss")));
  // It attaches to the model it came from (what eval --banks does).
  auto loaded = load_model(model_dir());
  attach_bank_file(loaded.model, file("domain.h5"));
  EXPECT_EQ(loaded.model->memory_layers()[0]->banks().size(), 2u);

  // The base bank (what --which base writes).
  bool stamped = true;
  auto base = load_run_bank(loaded, model_dir(), 0, "base", &stamped);
  EXPECT_EQ(base->size(), 256);
  EXPECT_EQ(base->bank().meta.model_fingerprint, *fingerprint_);
  EXPECT_FALSE(stamped);

  // A domain bank written before fingerprints were recorded gets the folder's.
  const auto legacy = copy_model("legacy");
  Bank d = read_bank(legacy + "/domain_0.h5");
  d.meta.model_fingerprint.clear();
  d.meta.memory_layer = -1;
  write_bank(legacy + "/domain_0.h5", d);
  fs::remove(legacy + "/domain_0.faiss");  // bound to the bank it replaced: rebuilt from the keys
  auto old = load_run_bank(load_model(legacy), legacy, 0, "domain", &stamped);
  EXPECT_TRUE(stamped);
  EXPECT_EQ(old->bank().meta.model_fingerprint, *fingerprint_);
  EXPECT_EQ(old->bank().meta.memory_layer, 0);
}

TEST_F(BankTools, ExportRefusesBanksOfAnotherRun) {
  const auto error = [](const std::string& dir, int64_t layer) {
    return test::error_of([&] { load_run_bank(load_model(dir), dir, layer, "domain"); });
  };
  const auto foreign = copy_model("foreign");
  Bank d = read_bank(foreign + "/domain_0.h5");
  d.meta.model_fingerprint = "0000000000000000";
  write_bank(foreign + "/domain_0.h5", d);
  fs::remove(foreign + "/domain_0.faiss");  // bound to the bank it replaced: rebuilt from the keys
  EXPECT_THAT(error(foreign, 0), AllOf(HasSubstr("trained for model 0000000000000000"),
                                       HasSubstr("copied from another run")));
  d.meta.model_fingerprint = *fingerprint_;
  d.meta.memory_layer = 1;
  write_bank(foreign + "/domain_0.h5", d);
  EXPECT_THAT(error(foreign, 0), HasSubstr("names memory layer 1, not 0"));

  const auto base_only = copy_model("base-only");
  fs::remove(base_only + "/domain_0.h5");
  EXPECT_THAT(error(base_only, 0),
              AllOf(HasSubstr("has no domain_0.h5"), HasSubstr("--which base")));
  EXPECT_THAT(error(model_dir(), 3), HasSubstr("memory layer 3 does not exist"));

  // A truncated index beside the domain bank.
  const auto cut = copy_model("cut");
  const std::string index = read_bytes(cut + "/domain_0.faiss");
  write_bytes(cut + "/domain_0.faiss", index.substr(0, index.size() / 3));
  EXPECT_THAT(error(cut, 0), HasSubstr("or truncated: rebuild it"));
}

TEST_F(BankTools, MergeCompactInspect) {
  const auto other = other_bank("other", 64, 5);
  IndexedBank(read_bank(model_dir() + "/domain_0.h5"), IndexConfig{}).save(file("d.h5"));
  auto r =
      kvtune("bank merge " + file("d.h5") + " " + other + " --out " + file("m.h5") + " --json");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto report = nlohmann::json::parse(r.output);
  EXPECT_EQ(report["slots_in"], 160);
  EXPECT_EQ(report["slots_out"], 160);  // random keys: no near-duplicates
  const Bank m = read_bank(file("m.h5"));
  EXPECT_EQ(m.size(), 160);
  ASSERT_EQ(m.origin.sources.size(), 2u);
  EXPECT_EQ(m.meta.name, "m");
  EXPECT_EQ(m.meta.model_fingerprint, *fingerprint_);
  EXPECT_TRUE(fs::is_regular_file(file("m.faiss")));

  r = kvtune("bank compact " + file("m.h5") + " --by usage --keep 0.5 --out " + file("u.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("kept 80 of 160 slots, dropped 80 (50.0%)"),
                              HasSubstr("usage dropped: ")));
  EXPECT_EQ(read_bank(file("u.h5")).origin.rows(), 80);  // origins of the kept slots only
  r = kvtune("bank compact " + file("m.h5") + " --by leverage --eps 0.02 --one-pass --json --out " +
             file("l.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  const auto lev = nlohmann::json::parse(r.output);
  EXPECT_EQ(lev["leverage"]["rank"], 8);
  EXPECT_EQ(lev["one_pass"]["candidate_limit"], 800);
  EXPECT_EQ(lev["slots_after"].get<int64_t>() + lev["dropped"].get<int64_t>(), 160);
  EXPECT_TRUE(fs::is_regular_file(file("l.faiss")));

  r = kvtune("bank inspect " + file("m.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("Gini"), HasSubstr("merged from 2 banks")));
}

TEST_F(BankTools, BadInputIsAClearErrorAndDamagesNothing) {
  const auto good = file("good.h5");
  IndexedBank(read_bank(model_dir() + "/domain_0.h5"), IndexConfig{}).save(good);
  const auto out = file("existing.h5");
  other_bank("existing", 20, 3);
  const std::string before = read_bytes(out), before_index = read_bytes(file("existing.faiss"));
  const auto expect_refused = [&](const std::string& args, const std::string& message) {
    SCOPED_TRACE(args);
    const auto r = kvtune(args + " --out " + out);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(message));
    EXPECT_EQ(read_bytes(out), before);
    EXPECT_EQ(read_bytes(file("existing.faiss")), before_index);
  };
  const auto read_error = [](const std::string& path) {
    return test::error_of([&] { read_bank(path); });
  };

  // A truncated bank, one altered inside its keys, one with a damaged signature.
  const std::string bytes = read_bytes(good);
  write_bytes(file("truncated.h5"), bytes.substr(0, bytes.size() / 2));
  const Bank g = read_bank(good);
  const std::string row0(static_cast<const char*>(g.keys[0].contiguous().data_ptr()), 8 * 4);
  const auto at = bytes.find(row0);
  ASSERT_NE(at, std::string::npos);
  // An exponent bit of the largest element of keys[0]: the row's norm moves well off 1.
  const size_t byte = at + 4 * g.keys[0].abs().argmax().item<int64_t>() + 3;
  std::string altered = bytes;
  altered[byte] = static_cast<char>(altered[byte] ^ 0x20);
  write_bytes(file("altered.h5"), altered);
  std::string unsigned_ = bytes;
  unsigned_[1] = 'X';
  write_bytes(file("unsigned.h5"), unsigned_);
  expect_refused("bank compact --by usage --keep 0.5 " + file("truncated.h5"), "truncated");
  expect_refused("bank merge " + good + " " + file("altered.h5"), "/keys row 0 has norm");
  EXPECT_THAT(read_error(file("truncated.h5")), HasSubstr("damaged or truncated"));
  EXPECT_THAT(read_error(file("altered.h5")), HasSubstr("normalize keys"));
  EXPECT_THAT(read_error(file("unsigned.h5")), HasSubstr("not an HDF5 file"));

  // Banks that do not belong together.
  Bank small = make_random_bank("small", 10, 4, 8, 1, false);
  small.meta.model_fingerprint = *fingerprint_;
  small.meta.memory_layer = 0;
  write_bank(file("small.h5"), small);
  expect_refused("bank merge " + good + " " + file("small.h5"), "have different dims");
  Bank stranger = g;
  stranger.meta.model_fingerprint = "00000000000000ff";
  write_bank(file("stranger.h5"), stranger);

  // A truncated index.
  fs::copy_file(good, file("cut.h5"));
  const std::string index = read_bytes(file("good.faiss"));
  write_bytes(file("cut.faiss"), index.substr(0, index.size() / 3));
  write_tensors(file("q.h5"), {{"queries", torch::randn({2, 8})}});
  {
    // Its own --out: a query output onto a bank file is refused before anything is read.
    const auto r = kvtune("bank query " + file("cut.h5") + " --queries " + file("q.h5") +
                          " --out " + file("cut_out.h5"));
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("or truncated: rebuild it"));
    EXPECT_FALSE(fs::exists(file("cut_out.h5")));
  }

  // Attaching: a bank for another model, or of other dims, is refused.
  const auto r = kvtune("eval --model " + model_dir() + " --data " + file("corpus.txt") +
                        " --banks " + file("stranger.h5"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, AllOf(HasSubstr("was trained for model 00000000000000ff"),
                              HasSubstr("attach it to the model its run fine-tuned")));
  auto loaded = load_model(model_dir());
  EXPECT_THAT(test::error_of([&] { attach_bank_file(loaded.model, file("small.h5")); }),
              HasSubstr("has key_dim 4 and value_dim 8 but the memory layer expects 8"));
  EXPECT_EQ(loaded.model->memory_layers()[0]->banks().size(), 1u);
  EXPECT_EQ(temporaries(dir_->path()), 0);
}

TEST_F(BankTools, UsageCountsEveryRetrieval) {
  auto loaded = load_model(model_dir());
  auto domain = load_run_bank(loaded, model_dir(), 0, "domain");
  loaded.model->memory_layers()[0]->attach(domain);
  UsageCountRequest request;
  request.sets = {file("corpus.txt")};
  request.data.seq_len = 16;
  request.batches = 2;
  request.batch_size = 4;
  const auto count = count_bank_usage(loaded.model, *loaded.tokenizer, request);
  EXPECT_EQ(count.sequences, 8);
  EXPECT_EQ(count.tokens, 8 * 16);
  // Each token's query retrieves k slots per head, from the base and domain banks together.
  const auto& mem = loaded.model->config().memory;
  const auto& banks = loaded.model->memory_layers()[0]->banks();
  const int64_t base = banks[0]->bank().usage.sum().item<int64_t>();
  const int64_t dom = domain->bank().usage.sum().item<int64_t>();
  EXPECT_EQ(base + dom, count.tokens * mem.heads * mem.attention.k);
  EXPECT_GT(dom, 0);

  const auto r =
      kvtune("bank export --model " + model_dir() + " --count-usage " + file("corpus.txt") +
             " --seq-len 16 --batches 2 --batch-size 4 --out " + file("counted.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("counted usage over 8 sequences (128 tokens)"));
  EXPECT_TRUE(torch::equal(read_bank(file("counted.h5")).usage, domain->bank().usage));
}

TEST_F(BankTools, PythonReadsWhatKvtuneWrote) {
  const std::string script = test::source_dir() + "/tools/check-bank-python";
  const auto deps = test::run_command(script + " --check-deps");
  // Exit 77: h5py, numpy or faiss cannot be imported. tools/setup installs python3-h5py and
  // python3-faiss, so under CI=true this fails rather than skips.
  if (deps.code == 77)
    KVTUNE_REQUIRE_PACKAGES(
        (test::MissingPackages{{"python3-h5py", "python3-faiss"}, deps.output}));
  ASSERT_EQ(deps.code, 0) << deps.output;
  // A merged bank (slot origins) with an approximate index.
  MergeOptions options;
  options.name = "pm";
  const Bank merged = merge_banks({{"a.h5", read_bank(model_dir() + "/domain_0.h5")},
                                   {"b.h5", read_bank(other_bank("p_other", 100, 9))}},
                                  options);
  IndexConfig ivf;
  ivf.factory = "IVF4,Flat";
  IndexedBank(merged, ivf).save(file("pm.h5"));
  const std::string binary = std::string(KVTUNE_BINARY_DIR) + "/kvtune";
  auto r = test::run_command(script + " " + file("pm.h5") + " --k 5 --kvtune " + binary);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("origins: 196 rows from 2 source banks"),
                              HasSubstr("return the same ids"), HasSubstr("all 4 checks passed")));
  // The checker fails on a bank whose index disagrees.
  IndexedBank(read_bank(file("p_other.h5")), IndexConfig{}).save(file("wrong.h5"));
  fs::copy_file(file("wrong.faiss"), file("pm.faiss"), fs::copy_options::overwrite_existing);
  r = test::run_command(script + " " + file("pm.h5") + " --kvtune " + binary);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("FAILED: index holds 100 vectors, bank has 196 slots"));
}

}  // namespace
}  // namespace kvtune

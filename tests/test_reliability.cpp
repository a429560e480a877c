// Issue 18, bank side: corrupt indexes refused before any search, an index bound to its bank, a
// kill between the renames of a save, an output that is an input, concurrent writers, a full
// disk, sizes checked before allocating, strict YAML, non-UTF-8 names (docs/reliability.md).
#include <H5Cpp.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>

#include "bank/bank_io.h"
#include "bank/indexed_bank.h"
#include "bank/tensor_file.h"
#include "bank_test_util.h"
#include "cli_test_util.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "common/isolated_call.h"
#include "common/portable_random.h"
#include "common/resources.h"
#include "common/utf8.h"
#include "common/yaml_reader.h"
#include "data/lm_dataset.h"
#include "data/text_reader.h"
#include "index/index_check.h"
#include "index/key_index.h"
#include "model/byte_tokenizer.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "sanitizer_test_util.h"
#include "test_util.h"
#include "train/recipe_io.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::kvtune;
using test::read_bytes;
using test::write_bytes;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Rewrites the faiss part of index file `path` after `change`, keeping kvtune's binding trailer
// (the last 32 bytes) so that only the faiss structure is corrupt.
template <typename F>
void corrupt_index_file(const std::string& path, F&& change) {
  const std::string old = read_bytes(path);
  const std::string trailer = old.substr(old.size() - 32);
  ASSERT_EQ(trailer.substr(0, 15), "KVTUNE-BANK-ID:");
  std::unique_ptr<faiss::Index> index(faiss::read_index(path.c_str()));
  change(index.get());
  faiss::write_index(index.get(), (path + ".new").c_str());
  write_bytes(path, read_bytes(path + ".new") + trailer);
  fs::remove(path + ".new");
}

// Case 1: the reproduction of the issue (neighbour ids + 5,000,000) through the program.
TEST(CorruptIndex, HnswNeighbourIdsOutOfRangeAreRefusedByQuery) {
  test::TempDir dir;
  const std::string bank = dir.file("x.h5");
  ASSERT_EQ(kvtune("bank create --n 2000 --key-dim 16 --value-dim 8 --seed 1 --index HNSW32 "
                   "--out " +
                   bank)
                .code,
            0);
  corrupt_index_file(dir.file("x.faiss"), [](faiss::Index* index) {
    auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index);
    ASSERT_NE(hnsw, nullptr);
    for (auto& v : hnsw->hnsw.neighbors) {
      if (v >= 0) v += 5000000;
    }
  });
  write_tensors(dir.file("q.h5"), {{"queries", torch::randn({64, 16})}});
  for (int i = 0; i < 3; ++i) {
    const auto r = kvtune("bank query " + bank + " --queries " + dir.file("q.h5") + " --out " +
                          dir.file("o.h5"));
    EXPECT_EQ(r.code, 1) << r.output;  // not a crash (-1), not wrong neighbours (0)
    EXPECT_THAT(r.output, HasSubstr("corrupt HNSW graph"));
    EXPECT_THAT(r.output, HasSubstr("rebuild"));
  }
}

// Each part of an HNSW graph and an IVF index that a search trusts, corrupted in turn.
TEST(CorruptIndex, EveryHnswAndIvfInconsistencyIsNamed) {
  const int64_t n = 600, d = 16;
  const Bank bank = make_random_bank("b", n, d, 4, 3, false);
  const float* keys = bank.keys.data_ptr<float>();
  test::TempDir dir;
  const auto saved = [&](const std::string& factory) {
    IndexConfig c;
    c.factory = factory;
    KeyIndex index(d, c);
    index.build(keys, n);
    const std::string path = dir.file(factory.substr(0, 4) + ".faiss");
    index.save(path);
    return path;
  };
  const auto refused = [&](const std::string& path, const std::function<void(faiss::Index*)>& f) {
    std::unique_ptr<faiss::Index> index(faiss::read_index(path.c_str()));
    f(index.get());
    const std::string bad = dir.file("bad.faiss");
    faiss::write_index(index.get(), bad.c_str());
    return error_of([&] { KeyIndex::load(bad, keys, n, d, IndexConfig{}); });
  };
  const std::string hnsw = saved("HNSW16");
  const auto graph = [](faiss::Index* i) -> faiss::HNSW& {
    return dynamic_cast<faiss::IndexHNSW*>(i)->hnsw;
  };
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).neighbors[7] = n; }),
              HasSubstr("neighbour id 600"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).neighbors[7] = -5; }),
              HasSubstr("neighbour id -5"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).entry_point = n + 3; }),
              HasSubstr("entry point"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).levels[5] = 40; }), HasSubstr("level"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).offsets[9] += 1; }),
              HasSubstr("offsets"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).max_level = 9; }),
              HasSubstr("max_level"));
  EXPECT_THAT(refused(hnsw, [&](faiss::Index* i) { graph(i).efSearch = 0; }),
              HasSubstr("efSearch"));

  const std::string ivf = saved("IVF8,Flat");
  const auto lists = [](faiss::Index* i) {
    return dynamic_cast<faiss::ArrayInvertedLists*>(dynamic_cast<faiss::IndexIVF*>(i)->invlists);
  };
  const auto nonempty = [&](faiss::Index* i) {
    size_t l = 0;
    while (lists(i)->ids[l].empty()) ++l;
    return l;
  };
  EXPECT_THAT(refused(ivf, [&](faiss::Index* i) { lists(i)->ids[nonempty(i)][0] = 5000000; }),
              HasSubstr("holds id 5000000"));
  EXPECT_THAT(refused(ivf,
                      [&](faiss::Index* i) {
                        auto* l = lists(i);
                        const size_t a = nonempty(i);
                        l->ids[a][0] = l->ids[a].size() > 1 ? l->ids[a][1] : l->ids[a][0];
                        if (l->ids[a].size() == 1) l->ids[(a + 1) % 8].push_back(l->ids[a][0]);
                      }),
              HasSubstr("twice"));
  EXPECT_THAT(
      refused(ivf, [&](faiss::Index* i) { dynamic_cast<faiss::IndexIVF*>(i)->nprobe = 99; }),
      HasSubstr("nprobe"));

  // The good files still load and search.
  for (const auto& path : {hnsw, ivf}) {
    auto index = KeyIndex::load(path, keys, n, d, IndexConfig{});
    std::vector<float> scores(1);
    std::vector<int64_t> ids(1);
    index.search(keys + 11 * d, 1, 1, scores.data(), ids.data());
    EXPECT_EQ(ids[0], 11);
  }
}

// Cases 5 and 6: another bank's index with the same N and dimension is refused, for bound
// banks (index ids differ) and for banks written before binding (the stored vectors differ).
TEST(BankIndexBinding, ForeignIndexWithSameSizeIsRefused) {
  test::TempDir dir;
  for (const auto& name : {"a", "b"}) {
    ASSERT_EQ(kvtune("bank create --n 400 --key-dim 16 --value-dim 8 --index IVF8,Flat --seed " +
                     std::string(name[0] == 'a' ? "1" : "2") + " --out " + dir.file(name) + ".h5")
                  .code,
              0);
  }
  write_tensors(dir.file("q.h5"), {{"queries", torch::randn({4, 16})}});
  const std::string query = "bank query " + dir.file("a.h5") + " --queries " + dir.file("q.h5") +
                            " --out " + dir.file("o.h5");
  ASSERT_EQ(kvtune(query).code, 0);
  fs::copy_file(dir.file("b.faiss"), dir.file("a.faiss"), fs::copy_options::overwrite_existing);
  auto r = kvtune(query);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is not the index of"));
  EXPECT_THAT(r.output, HasSubstr("remove it"));
  // Removed: rebuilt from the bank's keys.
  fs::remove(dir.file("a.faiss"));
  EXPECT_EQ(kvtune(query).code, 0);

  // A bank written without an index id (an older kvtune) beside a foreign IVF-Flat index.
  const Bank a = make_random_bank("old", 400, 16, 8, 1, false);
  const Bank b = make_random_bank("other", 400, 16, 8, 2, false);
  IndexConfig ivf;
  ivf.factory = "IVF8,Flat";
  write_bank(dir.file("old.h5"), a);
  IndexedBank(b, ivf).index().save(dir.file("old.faiss"));
  EXPECT_THAT(error_of([&] { IndexedBank::load(dir.file("old.h5"), IndexConfig{}); }),
              HasSubstr("does not hold the keys of"));
  IndexedBank(a, ivf).index().save(dir.file("old.faiss"));  // its own: accepted
  EXPECT_EQ(IndexedBank::load(dir.file("old.h5"), IndexConfig{})->index().size(), 400);
  // The committed version-1 file (no index beside it) still loads.
  EXPECT_NO_THROW(IndexedBank::load(test::source_dir() + "/tests/data/bank_format_v1.h5", {}));
}

// Top-1 of every key searched in the loaded pair: a bank and its own index find each key itself.
double self_recall(const IndexedBank& bank) {
  const int64_t n = bank.size(), d = bank.bank().meta.key_dim;
  std::vector<float> scores(n);
  std::vector<int64_t> ids(n);
  bank.index().search(bank.bank().keys.data_ptr<float>(), n, 1, scores.data(), ids.data());
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) hits += ids[i] == i && scores[i] > 0.999f;
  (void)d;
  return static_cast<double>(hits) / n;
}

// Case 5: a save killed after its index is written, and after its commit: the old pair, then the
// new pair, and the next save cleans what the kill left behind.
TEST(BankIndexBinding, KillBetweenRenamesLeavesTheOldOrTheNewPair) {
  test::TempDir dir;
  const std::string bank = dir.file("b.h5");
  const auto create = [&](int seed, const std::string& crash) {
    return test::run_command((crash.empty() ? "" : "KVTUNE_TEST_CRASH_AT=" + crash + " ") +
                             std::string(KVTUNE_BINARY_DIR) +
                             "/kvtune bank create --force --n 300 --key-dim 32 --value-dim 4 "
                             "--index HNSW16 --seed " +
                             std::to_string(seed) + " --out " + bank);
  };
  const auto keys_of_seed = [](int seed) {
    return make_random_bank("b", 300, 32, 4, static_cast<uint64_t>(seed), false).keys;
  };
  ASSERT_EQ(create(1, "").code, 0);
  const struct {
    const char* point;
    int seed;      // the save that is killed
    int expected;  // the keys of the pair found afterwards
  } cases[] = {{"bank-save-index-written", 2, 1}, {"bank-save-committed", 3, 3}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.point);
    const auto r = create(c.seed, c.point);
    EXPECT_EQ(r.code, 128 + 9) << r.output;  // killed by SIGKILL (as the shell reports it)
    const auto loaded = IndexedBank::load(bank, IndexConfig{});
    EXPECT_TRUE(test::same_bits(loaded->bank().keys, keys_of_seed(c.expected)));
    EXPECT_GE(self_recall(*loaded), 0.97);
  }
  // The next save finishes or removes what the kills left: only the pair and its lock remain.
  ASSERT_EQ(create(4, "").code, 0);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.insert(e.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"b.h5", "b.faiss", "b.h5.lock"}));
  const auto loaded = IndexedBank::load(bank, IndexConfig{});
  EXPECT_TRUE(test::same_bits(loaded->bank().keys, keys_of_seed(4)));
  EXPECT_GE(self_recall(*loaded), 0.97);
}

// Case 7: an output that is one of the inputs is refused and the input stays as it was.
TEST(OutputIsInput, RefusedEverywhereInTheBankCommands) {
  test::TempDir dir;
  const std::string good = dir.file("good.h5"), other = dir.file("other.h5");
  ASSERT_EQ(kvtune("bank create --n 50 --key-dim 8 --value-dim 4 --out " + good).code, 0);
  ASSERT_EQ(kvtune("bank create --n 50 --key-dim 8 --value-dim 4 --seed 2 --out " + other).code, 0);
  write_tensors(dir.file("q.h5"), {{"queries", torch::randn({4, 8})}});
  fs::create_symlink(good, dir.file("link.h5"));
  const std::string before = read_bytes(good), before_index = read_bytes(dir.file("good.faiss"));
  const std::string q = " --queries " + dir.file("q.h5");
  for (const std::string& args :
       {"bank query " + good + q + " --out " + good,
        "bank query " + good + q + " --out " + dir.file("link.h5"),
        "bank query " + good + q + " --out " + dir.file("good.faiss"),
        "bank query " + other + q + " --out " + good,  // another bank: refused too
        "bank merge " + good + " " + other + " --out " + good,
        "bank compact " + good + " --by usage --keep 0.5 --out " + good,
        "bank create --n 10 --key-dim 8 --value-dim 4 --out " + good}) {
    SCOPED_TRACE(args);
    const auto r = kvtune(args);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(dir.path().string()));
    EXPECT_THAT(r.output, HasSubstr("--out"));
  }
  EXPECT_EQ(read_bytes(good), before);
  EXPECT_EQ(read_bytes(dir.file("good.faiss")), before_index);
  EXPECT_EQ(kvtune("bank query " + good + q + " --out " + dir.file("o.h5")).code, 0);
}

// Case 4: a second writer waits for the first; with a short timeout it fails clearly.
TEST(WriterLock, SecondWriterWaitsThenFailsClearly) {
  test::TempDir dir;
  const std::string bank = dir.file("x.h5");
  FileLock held(bank);
  const auto r =
      test::run_command("KVTUNE_LOCK_TIMEOUT=0.2 " + std::string(KVTUNE_BINARY_DIR) +
                        "/kvtune bank create --n 10 --key-dim 4 --value-dim 4 --out " + bank);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is being written by kvtune process"));
  EXPECT_THAT(r.output, HasSubstr("x.h5.lock"));
  EXPECT_FALSE(fs::exists(bank));
}

int64_t new_slots(const std::string& output) {
  const auto at = output.find(" new slots");
  if (at == std::string::npos) return -1;
  auto start = output.rfind(' ', at - 1);
  return std::stoll(output.substr(start + 1, at - start - 1));
}

// Case 4: two `kvtune remember` on one bank at once: no update is lost.
TEST(WriterLock, ConcurrentRememberLosesNoUpdate) {
  test::TempDir dir;
  save_model(dir.file("model"), test::make_model(test::micro_config(), 5), test::micro_config(),
             ByteTokenizer());
  std::ofstream(dir.file("a.txt")) << "The moon is made of cheese.\n\nCats can fly.\n";
  std::ofstream(dir.file("b.txt")) << "Water boils at ten degrees.\n\nGlass is a liquid.\n";
  std::ofstream(dir.file("c.txt")) << "Salt is sweet.\n";
  const std::string bank = dir.file("m.h5");
  const auto remember = [&](const std::string& text) {
    return std::string(KVTUNE_BINARY_DIR) + "/kvtune remember --model " + dir.file("model") +
           " --bank " + bank + " --steps 1 --capacity 1000000 --text " + dir.file(text);
  };
  auto r = test::run_command(remember("c.txt"));
  ASSERT_EQ(r.code, 0) << r.output;
  const int64_t start = read_bank(bank).size();
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int64_t before = read_bank(bank).size();
    const std::string log_a = dir.file("a.log"), log_b = dir.file("b.log");
    r = test::run_command("(" + remember("a.txt") + " > " + log_a + " 2>&1 & " + remember("b.txt") +
                          " > " + log_b + " 2>&1 & wait)");
    const int64_t a = new_slots(read_bytes(log_a)), b = new_slots(read_bytes(log_b));
    ASSERT_GT(a, 0) << read_bytes(log_a);
    ASSERT_GT(b, 0) << read_bytes(log_b);
    EXPECT_EQ(read_bank(bank).size(), before + a + b);
  }
  EXPECT_GT(read_bank(bank).size(), start);
}

// Case 2: a write that fails part way (the file size limit: EFBIG, as ENOSPC on a full disk)
// ends with exit 1 and a clear error; an existing bank stays as it was and no partial file is
// left.
TEST(FullDisk, FailedWriteExitsCleanlyAndLeavesTheOldFiles) {
  test::TempDir dir;
  const std::string bank = dir.file("x.h5");
  ASSERT_EQ(kvtune("bank create --n 100 --key-dim 64 --value-dim 64 --out " + bank).code, 0);
  const std::string before = read_bytes(bank), before_index = read_bytes(dir.file("x.faiss"));
  // bash's ulimit -f counts 1024-byte blocks; SIGXFSZ ignored, so writes fail with EFBIG. 8000
  // blocks: the index (5 MB) is written, the bank (10 MB) fails part way.
  const std::string limited =
      "bash -c \"trap '' XFSZ; ulimit -f 8000; " + std::string(KVTUNE_BINARY_DIR) + "/kvtune ";
  for (const std::string& args :
       {"bank create --force --n 20000 --key-dim 64 --value-dim 64 --out " + bank + "\"",
        "bank create --n 20000 --key-dim 64 --value-dim 64 --out " + dir.file("new.h5") + "\""}) {
    SCOPED_TRACE(args);
    const auto r = test::run_command(limited + args);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("cannot write"));
  }
  EXPECT_EQ(read_bytes(bank), before);
  EXPECT_EQ(read_bytes(dir.file("x.faiss")), before_index);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.insert(e.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"x.h5", "x.faiss", "x.h5.lock", "new.h5.lock"}));
  // compact of a big bank into a new file under the same limit
  ASSERT_EQ(
      kvtune("bank create --n 20000 --key-dim 64 --value-dim 64 --out " + dir.file("big.h5")).code,
      0);
  const auto r = test::run_command(limited + "bank compact " + dir.file("big.h5") +
                                   " --by usage --keep 0.9 --out " + dir.file("c.h5") + "\"");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("c.h5")));
  EXPECT_FALSE(fs::exists(dir.file("c.faiss")));
}

// Case 11: sizes checked before allocating, with the value and the limit in the message.
TEST(SizeChecks, HugeCreateArgumentsAndDeclaredRowsAreRefused) {
  test::TempDir dir;
  for (const std::string& args : {"--n 1000000000000 --key-dim 64 --value-dim 64",
                                  "--n 10 --key-dim 1000000000000 --value-dim 4",
                                  "--n 4000000000 --key-dim 4000000000 --value-dim 4"}) {
    SCOPED_TRACE(args);
    const auto r = kvtune("bank create " + args + " --out " + dir.file("x.h5"));
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("of memory"));
    EXPECT_THAT(r.output, HasSubstr("this machine has"));
  }
  // A bank file that declares 2^31 rows (chunked, never written: the file stays small).
  const std::string path = dir.file("huge.h5");
  {
    H5::H5File f(path, H5F_ACC_TRUNC);
    const int32_t version = 1;
    const int64_t kd = 64, vd = 64;
    f.createAttribute("format_version", H5::PredType::STD_I32LE, H5::DataSpace(H5S_SCALAR))
        .write(H5::PredType::NATIVE_INT32, &version);
    f.createAttribute("key_dim", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR))
        .write(H5::PredType::NATIVE_INT64, &kd);
    f.createAttribute("value_dim", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR))
        .write(H5::PredType::NATIVE_INT64, &vd);
    const hsize_t rows = hsize_t{1} << 31;
    const auto make = [&](const char* name, const H5::PredType& type, int rank, hsize_t width) {
      hsize_t dims[2] = {rows, width}, chunk[2] = {1024, width};
      H5::DSetCreatPropList plist;
      plist.setChunk(rank, chunk);
      f.createDataSet(name, type, H5::DataSpace(rank, dims), plist);
    };
    make("keys", H5::PredType::IEEE_F32LE, 2, 64);
    make("values", H5::PredType::IEEE_F32LE, 2, 64);
    make("slot_ids", H5::PredType::STD_I64LE, 1, 1);
    make("usage", H5::PredType::STD_I64LE, 1, 1);
  }
  ASSERT_LT(fs::file_size(path), 1 << 20);
  const std::string e = error_of([&] { read_bank(path); });
  EXPECT_THAT(e, HasSubstr("declares 2147483648 slots"));
  EXPECT_THAT(e, HasSubstr("of memory"));
}

// Case 13: a key repeated in one map, or a second document, is an error.
TEST(StrictYaml, DuplicateKeysAndSecondDocumentsAreErrors) {
  test::TempDir dir;
  const auto load = [&](const std::string& text) {
    std::ofstream(dir.file("r.yaml")) << text;
    return error_of([&] { load_yaml_file(dir.file("r.yaml")); });
  };
  EXPECT_THAT(load("train:\n  lr: 1\n  steps: 3\n  lr: 2\n"),
              HasSubstr("line 4: key 'lr' appears twice"));
  EXPECT_THAT(load("a: 1\na: 1\n"), HasSubstr("key 'a' appears twice"));
  EXPECT_THAT(load("list:\n  - {x: 1, x: 2}\n"), HasSubstr("key 'x' appears twice"));
  EXPECT_THAT(load("a: 1\n---\nb: 2\n"), HasSubstr("more than one YAML document"));
  // A key that is not a scalar: a kvtune error from the strict reader, not a yaml-cpp exception.
  std::ofstream(dir.file("seq.yaml")) << "[1, 2]: x\n";
  EXPECT_THAT(error_of([&] {
                YamlReader reader(load_yaml_file(dir.file("seq.yaml")), "seq.yaml");
                reader.finish();
              }),
              HasSubstr("unknown key '[1, 2]'"));
  // What stays accepted: the same key in different maps, and one document with a --- header.
  std::ofstream(dir.file("ok.yaml")) << "---\na: {x: 1}\nb: {x: 2}\n";
  EXPECT_EQ(load_yaml_file(dir.file("ok.yaml"))["b"]["x"].as<int>(), 2);
  // A large file named as a recipe or config is refused before it is read (a sparse file).
  std::ofstream(dir.file("big.yaml")) << "a: 1\n";
  fs::resize_file(dir.file("big.yaml"), (16u << 20) + 1);
  EXPECT_THAT(error_of([&] { load_yaml_file(dir.file("big.yaml")); }),
              AllOf(HasSubstr("16777217 bytes"), HasSubstr("at most 16 MiB")));
}

// Case 14: bank names that are not UTF-8: refused at write time, a clear error on read, and
// JSON output never throws nlohmann's type_error.316.
TEST(Utf8Names, InvalidNamesAreRefusedNotThrownFromJson) {
  test::TempDir dir;
  Bank bank = make_random_bank("ok", 10, 4, 4, 1, false);
  bank.meta.name = "caf\xE9";
  EXPECT_THAT(error_of([&] { write_bank(dir.file("w.h5"), bank); }), HasSubstr("caf\\xE9"));
  EXPECT_FALSE(fs::exists(dir.file("w.h5")));
  // A file written by another tool with a Latin-1 name.
  bank.meta.name = "ok";
  write_bank(dir.file("l1.h5"), bank);
  {
    H5::H5File f(dir.file("l1.h5"), H5F_ACC_RDWR);
    f.removeAttr("name");
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    f.createAttribute("name", type, H5::DataSpace(H5S_SCALAR)).write(type, std::string("caf\xE9"));
  }
  auto r = kvtune("bank inspect --json " + dir.file("l1.h5"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("not valid UTF-8"));
  EXPECT_THAT(r.output, Not(HasSubstr("type_error")));
  // A merge input whose file name is not UTF-8: its name goes into JSON attributes.
  write_bank(dir.file("caf\xE9.h5"), bank);
  r = kvtune("bank merge '" + dir.file("caf\xE9.h5") + "' --name m --json --out " +
             dir.file("m.h5"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("type_error")));
  EXPECT_NO_THROW(read_bank(dir.file("m.h5")));
  EXPECT_TRUE(valid_utf8("caf\xC3\xA9"));
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));  // a surrogate
  EXPECT_EQ(escape_invalid_utf8("a\xFF"
                                "b"),
            "a\\xFFb");
}

// Portable draws: the values of an independent (Python) mt19937_64 reduced by rejection, which a
// std::uniform_int_distribution need not give (its mapping differs between standard libraries).
TEST(PortableDraws, MatchAReferenceComputation) {
  std::mt19937_64 check;
  check.discard(9999);
  EXPECT_EQ(check(), 9981545732273789042ull);  // the standard's own check value
  std::mt19937_64 rng(7);
  std::vector<uint64_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(uniform_below(rng, 10));
  EXPECT_EQ(got, (std::vector<uint64_t>{5, 0, 8, 6, 1}));
  rng.seed(7);
  got.clear();
  for (int i = 0; i < 5; ++i) got.push_back(uniform_below(rng, 1000003));
  EXPECT_EQ(got, (std::vector<uint64_t>{638189, 820551, 279494, 88296, 479416}));
  rng.seed(7);
  EXPECT_EQ(uniform_between(rng, 10, 19), 15);
}

// The language-model dataset's training batches use the portable draws: each row starts where
// a reference computation of rejection sampling over the engine's raw output says.
TEST(PortableDraws, TrainingBatchesStartWhereTheReferenceDrawsSay) {
  std::vector<int64_t> doc(1000);
  std::iota(doc.begin(), doc.end(), 0);  // token i at position i: a row's first token is its start
  const int64_t seq_len = 16, batch = 8;
  const LmDataset data({doc}, seq_len);
  for (const auto& [seed, step] : {std::pair<uint64_t, int64_t>{1, 0}, {3, 17}}) {
    const auto rows = data.train_batch(batch, seed, step);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
    const uint64_t range = 1000 - seq_len;  // starts 0 .. 1000 - seq_len - 1
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    for (int64_t b = 0; b < batch; ++b) {
      uint64_t x = rng();
      while (x >= limit) x = rng();
      const auto expected = static_cast<int64_t>(x % range);
      EXPECT_EQ(rows[b][0].item<int64_t>(), expected) << "seed " << seed << " row " << b;
      EXPECT_EQ(rows[b][seq_len].item<int64_t>(), expected + seq_len);
    }
  }
}

}  // namespace
}  // namespace kvtune

namespace kvtune {
namespace {

// How the parent sees a child's SIGSEGV: the signal, or under AddressSanitizer (tools/test
// --sanitize) the exit status ASan's own handler ends the child with after its report.
#if defined(KVTUNE_TEST_ASAN)
constexpr const char* kSegvSeenAs = "exit status ";
#else
constexpr const char* kSegvSeenAs = "signal 11";
#endif

// A bank too large for the process (its memory limit, the machine) is an error that says so and
// names the fix, in the reading child and in the process itself, not an internal error with
// libtorch's backtrace.
TEST(OutOfMemory, ATensorTooLargeForTheProcessIsAnErrorThatNamesTheFix) {
#if defined(KVTUNE_TEST_ASAN)
  GTEST_SKIP() << "ASan's allocator reports allocations this large instead of failing them";
#endif
  EXPECT_THAT(out_of_memory_message(std::bad_alloc()), HasSubstr("out of memory"));
  EXPECT_EQ(out_of_memory_message(std::runtime_error("x")), "");
  const auto huge = [] { return torch::empty({int64_t{1} << 46}, torch::kFloat32); };
  try {
    huge();
    FAIL() << "a 256 TiB tensor was allocated";
  } catch (const std::exception& e) {
    const auto message = out_of_memory_message(e);
    EXPECT_THAT(message, AllOf(HasSubstr("out of memory"), HasSubstr("281474976710656 bytes"),
                               HasSubstr("train.shard_base_banks")));
    EXPECT_THAT(message, Not(HasSubstr("frame #")));
  }
  EXPECT_THAT(error_of([&] {
                isolated_call(
                    [&]() -> std::string {
                      huge();
                      return "unreachable";
                    },
                    "bank big.h5", 60);
              }),
              AllOf(HasSubstr("out of memory"), Not(HasSubstr("internal error"))));
}

// HDF5 reads user files in a child process: a crash there is an error here, not a crash; the
// child's own errors come back with their message; results come back byte for byte.
TEST(IsolatedCall, ACrashInTheChildIsAnErrorAndResultsComeBack) {
  EXPECT_THAT(error_of([] {
                isolated_call(
                    []() -> std::string {
                      std::raise(SIGSEGV);
                      return "unreachable";
                    },
                    "bank x.h5", 60);
              }),
              AllOf(HasSubstr(std::string("bank x.h5 could not be read: the library reading it "
                                          "crashed (") +
                              kSegvSeenAs),
                    HasSubstr("the file is damaged")));
  EXPECT_THAT(error_of([] { isolated_call([]() -> std::string { ::_exit(0); }, "bank y.h5", 60); }),
              HasSubstr("crashed (exit status 0)"));
  EXPECT_EQ(error_of([] {
              isolated_call([]() -> std::string { KVT_THROW("x.h5: /keys row 3 has norm 2"); },
                            "bank x.h5", 60);
            }),
            "x.h5: /keys row 3 has norm 2");
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  EXPECT_EQ(isolated_call([&] { return big; }, "big", 60), big);
  // A child that never finishes (HDF5 loops forever on some damaged files) is killed.
  EXPECT_THAT(error_of([] {
                isolated_call(
                    []() -> std::string {
                      for (;;) ::pause();
                    },
                    "bank z.h5", 0.5);
              }),
              HasSubstr("bank z.h5 could not be read: the library reading it did not finish "
                        "within 0.5 s"));
}

// A large result comes back through the memory file: the bytes the child wrote, aligned where it
// asked, the answer beside them; a crash after writing is still an error; writing to the mapping
// here touches neither the child's answer nor a second call.
// Calls from several threads (a user's threads, each loading a bank) must each get their own
// child's answer, bulk and crash, never another's.
TEST(IsolatedCall, CallsFromSeveralThreadsGetTheirOwnResults) {
#ifdef KVTUNE_TEST_ASAN
  // clang 14's ASan does not reset its allocator's lock in a forked child: a fork while another
  // thread allocates can leave the child stuck (docs/reliability.md). The plain build runs this.
  GTEST_SKIP() << "fork beside allocating threads can hang under clang 14's ASan";
#endif
  constexpr int kThreads = 4, kCalls = 12;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      for (int c = 0; c < kCalls; ++c) {
        const std::string tag = std::to_string(t) + "/" + std::to_string(c);
        const bool crash = (t + c) % 5 == 0;
        std::vector<char> bytes(256 << 10);
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * (t + 3) + c);
        try {
          const IsolatedResult r = isolated_call_bulk(
              [&](BulkSink& sink) {
                if (crash) std::raise(SIGSEGV);
                sink.append(bytes.data(), bytes.size());
                return tag;
              },
              "file " + tag, 60);
          if (crash) failures[t] += tag + ": no crash reported; ";
          if (r.answer != tag) failures[t] += tag + ": answer " + r.answer + "; ";
          if (r.bulk->size() != bytes.size() ||
              !std::equal(bytes.begin(), bytes.end(), r.bulk->data())) {
            failures[t] += tag + ": another call's bytes; ";
          }
        } catch (const Error& e) {
          const std::string want =
              "file " + tag + " could not be read: the library reading it crashed";
          if (!crash || std::string(e.what()).rfind(want, 0) != 0) {
            failures[t] += tag + ": " + e.what() + "; ";
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

// IndexedBank::load forks the index's child, then the bank's, and waits for both: each pending
// call gets its own answer and bulk whatever the order it is finished in; a crash stays its own.
TEST(IsolatedCall, PendingCallsRunSideBySideAndFinishInAnyOrder) {
  std::vector<char> a(300 << 10, 'a'), b(200 << 10, 'b');
  PendingBulkCall first(
      [&](BulkSink& sink) {
        sink.append(a.data(), a.size());
        return std::string("first");
      },
      "file first", 60);
  PendingBulkCall crashing(
      [&](BulkSink&) -> std::string {
        std::raise(SIGSEGV);
        return "never";
      },
      "file crashing", 60);
  PendingBulkCall second(
      [&](BulkSink& sink) {
        sink.append(b.data(), b.size());
        return std::string("second");
      },
      "file second", 60);
  const IsolatedResult r2 = second.finish();
  EXPECT_THAT([&] { crashing.finish(); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("file crashing could not be read: the library reading it crashed")));
  const IsolatedResult r1 = first.finish();
  EXPECT_EQ(r1.answer, "first");
  EXPECT_EQ(r2.answer, "second");
  ASSERT_EQ(r1.bulk->size(), a.size());
  ASSERT_EQ(r2.bulk->size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), r1.bulk->data()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), r2.bulk->data()));
  EXPECT_THAT([&] { first.finish(); },
              ::testing::ThrowsMessage<Error>(HasSubstr("was finished already")));
  // Dropped unfinished: the destructor kills and reaps the child instead of waiting for it.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = 0;
  {
    PendingBulkCall dropped(
        [&](BulkSink&) {
          const pid_t self = ::getpid();
          if (::write(fds[1], &self, sizeof(self)) != sizeof(self)) ::_exit(4);
          ::sleep(600);
          return std::string();
        },
        "file dropped", 600);
    ASSERT_EQ(::read(fds[0], &child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
    EXPECT_EQ(::kill(child, 0), 0) << "the child should still be sleeping here";
  }
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(::kill(child, 0), -1) << "the dropped call's child is still there";
  EXPECT_EQ(errno, ESRCH);
}

TEST(IsolatedCall, BulkResultsComeBackMappedAndCrashesAreStillErrors) {
  std::vector<char> big(5 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  size_t at_big = 0, at_tail = 0;
  auto work = [&](BulkSink& sink) {
    sink.write("abc", 3);
    at_big = sink.append(big.data(), big.size());
    at_tail = sink.append("tail", 4);
    return std::to_string(at_big) + " " + std::to_string(at_tail);
  };
  IsolatedResult r = isolated_call_bulk(work, "bank b.h5", 60);
  // The offsets were computed in the child; the same arithmetic here gives the same ones.
  EXPECT_EQ(r.answer, "64 " + std::to_string(64 + ((big.size() + 63) / 64) * 64));
  ASSERT_EQ(r.bulk->size(), 64 + ((big.size() + 63) / 64) * 64 + 4);
  EXPECT_EQ(std::string(r.bulk->data(), 3), "abc");
  EXPECT_TRUE(std::equal(big.begin(), big.end(), r.bulk->data() + 64));
  EXPECT_EQ(std::string(r.bulk->data() + r.bulk->size() - 4, 4), "tail");
  r.bulk->data()[64] = 'X';  // copy-on-write: private to this mapping
  const IsolatedResult again = isolated_call_bulk(work, "bank b.h5", 60);
  EXPECT_EQ(again.bulk->data()[64], big[0]);
  const IsolatedResult none =
      isolated_call_bulk([](BulkSink&) { return std::string("ok"); }, "bank e.h5", 60);
  EXPECT_EQ(none.answer, "ok");
  EXPECT_EQ(none.bulk->size(), 0u);
  EXPECT_THAT(error_of([&] {
                isolated_call_bulk(
                    [&](BulkSink& sink) -> std::string {
                      sink.append(big.data(), big.size());
                      std::raise(SIGSEGV);
                      return "unreachable";
                    },
                    "bank c.h5", 60);
              }),
              HasSubstr(std::string("bank c.h5 could not be read: the library reading it "
                                    "crashed (") +
                        kSegvSeenAs));
}

// Inputs that once crashed a fuzz harness (tests/fuzz/regressions/): the same readers in the
// normal build refuse each one with a kvtune::Error or read it, never crash.
TEST(FuzzRegressions, KeptInputsAreRefusedCleanly) {
  const fs::path folder = fs::path(test::source_dir()) / "tests/fuzz/regressions";
  int replayed = 0;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    const std::string path = e.path().string();
    SCOPED_TRACE(name);
    try {
      if (name.rfind("faiss_index-", 0) == 0) {
        std::vector<float> keys(4096, 0.0f);
        KeyIndex::load(path, keys.data(), 0, 1, IndexConfig{});
      } else if (name.rfind("bank_reader-", 0) == 0) {
        // One of them makes HDF5 loop forever: cut it off sooner than the default.
        ::setenv("KVTUNE_READ_TIMEOUT", "3", 1);
        const auto message = error_of([&] { read_bank(path); });
        ::unsetenv("KVTUNE_READ_TIMEOUT");
        if (name == "bank_reader-hdf5-endless-loop")
          EXPECT_THAT(message, HasSubstr("did not finish within 3 s"));
        else
          EXPECT_THAT(message, HasSubstr(path));
      } else if (name.rfind("yaml-", 0) == 0) {
        load_yaml_file(path);
      } else if (name.rfind("text_readers-", 0) == 0) {
        // As the harness: the first byte picks the reader (0 plain text, 1 JSONL).
        const std::string bytes = read_bytes(path);
        ASSERT_FALSE(bytes.empty());
        test::TempDir dir;
        const std::string text = dir.file("t"), rest = bytes.substr(1);
        write_bytes(text, rest);
        const int mode = static_cast<unsigned char>(bytes[0]) % 3;
        ASSERT_LT(mode, 2) << "add the dictd case of fuzz_text_readers here";
        if (mode == 0) {
          read_plain_text(text);
        } else {
          const auto message = error_of([&] {
            read_jsonl(text, "text", static_cast<unsigned char>(bytes[0]) % 2 ? "title" : "");
          });
          EXPECT_THAT(message, HasSubstr("invalid JSON"));
        }
      } else if (name.rfind("recipe-", 0) == 0) {
        // As the harness: the recipe up to the first NUL, then one --set per line.
        const std::string bytes = read_bytes(path);
        const size_t nul = bytes.find('\0');
        std::vector<std::string> sets;
        for (size_t start = nul == std::string::npos ? bytes.size() + 1 : nul + 1;
             start <= bytes.size() && sets.size() < 8;) {
          const size_t end = std::min(bytes.find('\n', start), bytes.size());
          sets.push_back(bytes.substr(start, end - start));
          start = end + 1;
        }
        test::TempDir dir;
        write_bytes(dir.file("r.yaml"), bytes.substr(0, nul));
        const std::string configs = test::source_dir() + "/configs";
        if (name == "recipe-model-name-too-long") {
          // A `model:` name longer than a file name may be: std::filesystem threw from the
          // existence check (an internal error); now the reader's own message.
          EXPECT_THAT(error_of([&] { load_recipe(dir.file("r.yaml"), sets, configs); }),
                      HasSubstr("no model config named"));
        } else {
          validate_recipe(load_recipe(dir.file("r.yaml"), sets, configs), "r.yaml");
        }
      } else {
        continue;
      }
    } catch (const Error&) {
    }
    ++replayed;
  }
  std::cout << "[ replayed ] " << replayed << " kept fuzz inputs\n";
}

}  // namespace
}  // namespace kvtune

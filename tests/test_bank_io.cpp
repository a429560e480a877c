// bank_io.h: bit-exact round trips, one clear error per kind of bad file, atomic writes.
#include "bank/bank_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "bank_test_util.h"
#include "common/atomic_file.h"
#include "test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::expect_same_bank;
using test::write_raw_bank;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Odd sizes and meta fields that would expose truncation, rounding or a lost attribute.
Bank odd_bank(uint64_t seed) {
  Bank b = make_random_bank("odd bank", 37, 13, 7, seed, /*trainable=*/true);
  auto gen = at::detail::createCPUGenerator(seed + 1);
  b.slot_ids = torch::randperm(37, gen, torch::kInt64).mul_(1000003).add_(int64_t{1} << 40);
  b.usage = torch::randint(0, int64_t{1} << 50, {37}, gen, torch::kInt64);
  b.meta.score_scale = 1.0 / 3.0;
  b.meta.provenance = R"({"source": "test", "note": "quotes \" and unicode \u00e9\u00e8"})";
  b.meta.index_factory = "IVF4,Flat";
  return b;
}

class BankIo : public ::testing::Test {
 protected:
  test::TempDir dir_;
  std::string path_ = dir_.file("bank.h5");
  Bank bank_ = odd_bank(test::test_seed());

  std::string read_error() {
    return error_of([&] { read_bank(path_); });
  }
};

TEST_F(BankIo, RoundTripIsBitExact) {
  write_bank(path_, bank_);
  expect_same_bank(read_bank(path_), bank_);
}

TEST_F(BankIo, RoundTripOfAnEmptyBank) {
  const Bank empty = make_random_bank("empty", 0, 5, 3, 1, false);
  write_bank(path_, empty);
  expect_same_bank(read_bank(path_), empty);
}

TEST_F(BankIo, WritesNonContiguousTensorsAndTensorsThatRequireGrad) {
  Bank b = bank_;
  b.keys = bank_.keys.t().contiguous().t().requires_grad_(true);  // column-major view
  ASSERT_FALSE(b.keys.is_contiguous());
  write_bank(path_, b);
  expect_same_bank(read_bank(path_), bank_);
}

TEST_F(BankIo, WritesTheDocumentedAttributes) {
  write_bank(path_, bank_);
  H5::H5File f(path_, H5F_ACC_RDONLY);
  for (const char* name : {"format_version", "name", "trainable", "key_dim", "value_dim",
                           "score_scale", "provenance", "index_factory", "kvtune_version"}) {
    EXPECT_TRUE(f.attrExists(name)) << name;
  }
  std::string version;
  f.openAttribute("kvtune_version").read(f.openAttribute("kvtune_version").getStrType(), version);
  EXPECT_EQ(version, KVTUNE_VERSION);
  EXPECT_EQ(f.openDataSet("keys").getDataType(), H5::PredType::IEEE_F32LE);
  EXPECT_EQ(f.openDataSet("usage").getDataType(), H5::PredType::STD_I64LE);
}

TEST_F(BankIo, NoTempFileIsLeftAfterAWrite) {
  write_bank(path_, bank_);
  write_bank(path_, bank_);  // over an existing file too
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_.path())) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"bank.h5"});
}

TEST_F(BankIo, ReadsFilesFromOtherWriters) {
  // Fixed-length strings, big-endian data, an int64 format_version and an h5py-style bool.
  write_raw_bank(path_, bank_, {"keys", "trainable"}, [&](test::RawH5File& raw) {
    raw.tensor("keys", bank_.keys, H5::PredType::IEEE_F32BE);
    raw.bool_attr("trainable", true);
  });
  expect_same_bank(read_bank(path_), bank_);
}

TEST_F(BankIo, OptionalAttributesHaveDefaults) {
  write_raw_bank(path_, bank_, {"name", "trainable", "score_scale", "provenance", "index_factory"});
  const Bank b = read_bank(path_);
  EXPECT_EQ(b.meta.name, "bank");  // the file's stem
  EXPECT_FALSE(b.meta.trainable);
  EXPECT_EQ(b.meta.score_scale, 0.0);
  EXPECT_EQ(b.meta.provenance, "");
  EXPECT_EQ(b.meta.index_factory, "");
  EXPECT_TRUE(torch::equal(b.keys, bank_.keys));
}

// Memory parallelism: each rank's share of the rows (37 over 1, 2, 3 and 5 ranks) is exactly
// those rows of the bank that was written, and the shares tile it; the meta comes along.
TEST_F(BankIo, EachRanksShareIsItsRowsOfTheFile) {
  write_bank(path_, bank_);
  for (const int world : {1, 2, 3, 5}) {
    int64_t next = 0;
    for (int rank = 0; rank < world; ++rank) {
      const BankShare share = read_bank_share(path_, rank, world);
      EXPECT_EQ(share.total_rows, 37);
      EXPECT_EQ(share.begin, next) << rank << " of " << world;
      const int64_t n = share.bank.size();
      EXPECT_GE(n, 37 / world);
      EXPECT_TRUE(torch::equal(share.bank.keys, bank_.keys.narrow(0, share.begin, n)));
      EXPECT_TRUE(torch::equal(share.bank.values, bank_.values.narrow(0, share.begin, n)));
      EXPECT_TRUE(torch::equal(share.bank.slot_ids, bank_.slot_ids.narrow(0, share.begin, n)));
      EXPECT_TRUE(torch::equal(share.bank.usage, bank_.usage.narrow(0, share.begin, n)));
      EXPECT_EQ(share.bank.meta.name, bank_.meta.name);
      EXPECT_EQ(share.bank.meta.score_scale, bank_.meta.score_scale);
      next += n;
    }
    EXPECT_EQ(next, 37) << world;
  }
  EXPECT_THAT(error_of([&] { read_bank_share(path_, 0, 38); }),
              AllOf(HasSubstr(path_), HasSubstr("cannot be split over 38 ranks")));
  fs::resize_file(path_, fs::file_size(path_) / 2);
  EXPECT_THAT(error_of([&] { read_bank_share(path_, 1, 2); }),
              AllOf(HasSubstr(path_), HasSubstr("damaged or truncated")));
}

TEST_F(BankIo, MissingFile) {
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("no such file")));
}

TEST_F(BankIo, TextFileRenamedH5) {
  std::ofstream(path_) << "keys,values\n1,2\n";
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("not an HDF5 file")));
}

TEST_F(BankIo, TruncatedFile) {
  write_bank(path_, bank_);
  fs::resize_file(path_, fs::file_size(path_) / 2);
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("damaged or truncated")));
}

TEST_F(BankIo, MissingDataset) {
  write_raw_bank(path_, bank_, {"values"});
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("dataset /values is missing")));
}

TEST_F(BankIo, WrongShape) {
  write_raw_bank(path_, bank_, {"values"}, [&](test::RawH5File& raw) {
    raw.tensor("values", bank_.values.unsqueeze(2), H5::PredType::IEEE_F32LE);
  });
  EXPECT_THAT(read_error(),
              AllOf(HasSubstr(path_), HasSubstr("/values has shape [37, 7, 1], expected [37, 7]")));
}

TEST_F(BankIo, Float64Keys) {
  write_raw_bank(path_, bank_, {"keys"}, [&](test::RawH5File& raw) {
    raw.tensor("keys", bank_.keys.to(torch::kFloat64), H5::PredType::IEEE_F64LE);
  });
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("/keys is stored as float64"),
                                  HasSubstr("astype('float32')")));
}

TEST_F(BankIo, IntegerKeys) {
  write_raw_bank(path_, bank_, {"keys"}, [&](test::RawH5File& raw) {
    raw.tensor("keys", bank_.keys.mul(100).to(torch::kInt32), H5::PredType::STD_I32LE);
  });
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("/keys is stored as int32")));
}

TEST_F(BankIo, Int32SlotIds) {
  write_raw_bank(path_, bank_, {"slot_ids"}, [&](test::RawH5File& raw) {
    raw.tensor("slot_ids", torch::arange(37, torch::kInt32), H5::PredType::STD_I32LE);
  });
  EXPECT_THAT(read_error(), HasSubstr("/slot_ids is stored as int32, expected int64"));
}

TEST_F(BankIo, RowCountMismatch) {
  write_raw_bank(path_, bank_, {"usage"}, [&](test::RawH5File& raw) {
    raw.tensor("usage", bank_.usage.slice(0, 0, 36), H5::PredType::STD_I64LE);
  });
  EXPECT_THAT(read_error(),
              AllOf(HasSubstr(path_), HasSubstr("/usage has 36 rows but /keys has 37")));
}

TEST_F(BankIo, DimAttributeDisagreesWithData) {
  write_raw_bank(path_, bank_, {"key_dim"},
                 [](test::RawH5File& raw) { raw.int_attr("key_dim", 12); });
  EXPECT_THAT(read_error(), HasSubstr("/keys has 13 columns but attribute key_dim is 12"));
  write_raw_bank(path_, bank_, {"value_dim"},
                 [](test::RawH5File& raw) { raw.int_attr("value_dim", 8); });
  EXPECT_THAT(read_error(), HasSubstr("/values has 7 columns but attribute value_dim is 8"));
}

TEST_F(BankIo, NanKey) {
  Bank b = bank_;
  b.keys = bank_.keys.clone();
  b.keys[17][3] = std::nanf("");
  write_raw_bank(path_, b);
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("/keys row 17 column 3 is nan")));
}

TEST_F(BankIo, NonUnitKeyIsRefusedNotNormalized) {
  Bank b = bank_;
  b.keys = bank_.keys.clone();
  b.keys[17].mul_(1.53);
  write_raw_bank(path_, b);
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_ + ": /keys row 17 has norm 1.53"),
                                  HasSubstr("normalize keys before writing")));
}

TEST_F(BankIo, NewerFormatVersion) {
  write_raw_bank(path_, bank_, {"format_version"},
                 [](test::RawH5File& raw) { raw.int_attr("format_version", 99); });
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("format_version 99"),
                                  HasSubstr("written by a newer kvtune")));
}

TEST_F(BankIo, MissingRequiredAttributes) {
  for (const char* name : {"format_version", "key_dim", "value_dim"}) {
    write_raw_bank(path_, bank_, {name});
    EXPECT_THAT(read_error(),
                AllOf(HasSubstr(path_),
                      HasSubstr("required attribute " + std::string(name) + " is missing")));
  }
}

TEST_F(BankIo, WronglyTypedAttribute) {
  write_raw_bank(path_, bank_, {"key_dim"},
                 [](test::RawH5File& raw) { raw.string_attr("key_dim", "13"); });
  EXPECT_THAT(read_error(), HasSubstr("attribute key_dim is string, expected an integer"));
}

TEST_F(BankIo, DuplicateSlotIds) {
  Bank b = bank_;
  b.slot_ids = torch::arange(37, torch::kInt64);
  b.slot_ids[30] = 4;
  write_raw_bank(path_, b);
  EXPECT_THAT(read_error(), AllOf(HasSubstr(path_), HasSubstr("duplicate id 4 (rows 4 and 30)")));
}

TEST_F(BankIo, FailedValidationLeavesTheExistingFileIntact) {
  write_bank(path_, bank_);
  Bank bad = bank_;
  bad.values = bank_.values.clone();
  bad.values[5][1] = std::nanf("");
  EXPECT_THAT(error_of([&] { write_bank(path_, bad); }),
              AllOf(HasSubstr(path_), HasSubstr("/values row 5 column 1 is nan")));
  expect_same_bank(read_bank(path_), bank_);
}

TEST_F(BankIo, FailedHdf5WriteLeavesTheExistingFileIntact) {
  write_bank(path_, bank_);
  const Bank other = make_random_bank("other", 5, 13, 7, 3, false);
  // A folder where the temporary file should go: the file image cannot be written there.
  fs::create_directory(atomic_temp_path(path_));
  EXPECT_THAT(
      error_of([&] { write_bank(path_, other); }),
      AllOf(HasSubstr("cannot write " + atomic_temp_path(path_)), HasSubstr("Is a directory")));
  expect_same_bank(read_bank(path_), bank_);
}

TEST_F(BankIo, WriteRefusesAMissingFolder) {
  EXPECT_THAT(error_of([&] { write_bank(dir_.file("no/such/bank.h5"), bank_); }),
              HasSubstr("does not exist"));
}

// A version-1 file committed to the repository: later layouts must keep loading it.
// Regenerate (only if the expected bank below changes) with KVTUNE_WRITE_FIXTURES=1.
Bank v1_fixture_bank() {
  Bank b;
  b.keys = torch::tensor({1.f, 0.f, 0.f, 0.f, 0.6f, 0.8f, 0.f, -1.f, 0.f}).view({3, 3});
  b.values = torch::tensor({0.5f, -0.25f, 3.f, 1e-8f, -7.f, 42.f}).view({3, 2});
  b.slot_ids = torch::tensor({int64_t{10}, int64_t{20}, int64_t{1} << 40});
  b.usage = torch::tensor({int64_t{0}, int64_t{7}, int64_t{123456789}});
  b.meta.name = "v1 fixture";
  b.meta.trainable = true;
  b.meta.key_dim = 3;
  b.meta.value_dim = 2;
  b.meta.score_scale = 2.5;
  b.meta.provenance = R"({"source": "tests/test_bank_io.cpp"})";
  b.meta.index_factory = "Flat";
  return b;
}

TEST(BankFormat, Version1FileStillLoads) {
  const std::string path = test::source_dir() + "/tests/data/bank_format_v1.h5";
  if (std::getenv("KVTUNE_WRITE_FIXTURES")) write_bank(path, v1_fixture_bank());
  Bank want = v1_fixture_bank();
  want.meta.format_version = 1;
  expect_same_bank(read_bank(path), want);
}

}  // namespace
}  // namespace kvtune

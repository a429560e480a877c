// tensor_file.h: named tensors in plain HDF5 files.
#include "bank/tensor_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "bank_test_util.h"
#include "common/atomic_file.h"
#include "test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::same_bits;
using ::testing::AllOf;
using ::testing::HasSubstr;

class BankTensorFile : public ::testing::Test {
 protected:
  test::TempDir dir_;
  std::string path_ = dir_.file("t.h5");
};

TEST_F(BankTensorFile, RoundTripIsBitExact) {
  torch::manual_seed(test::test_seed());
  const torch::Tensor queries = torch::randn({19, 13});
  const torch::Tensor scores = torch::randn({19, 5}, torch::kFloat64);
  const torch::Tensor ids = torch::randint(-(int64_t{1} << 60), int64_t{1} << 60, {19, 5},
                                           torch::TensorOptions().dtype(torch::kInt64));
  const torch::Tensor vec = torch::randn({7});
  const torch::Tensor empty = torch::empty({0, 4});
  write_tensors(
      path_,
      {{"queries", queries}, {"/scores", scores}, {"ids", ids}, {"vec", vec}, {"empty", empty}});
  EXPECT_TRUE(same_bits(read_tensor(path_, "queries"), queries));
  EXPECT_TRUE(same_bits(read_tensor(path_, "scores"), scores));
  EXPECT_TRUE(same_bits(read_tensor(path_, "/ids"), ids));
  EXPECT_TRUE(same_bits(read_tensor(path_, "vec"), vec));
  EXPECT_TRUE(same_bits(read_tensor(path_, "empty"), empty));
}

TEST_F(BankTensorFile, WritesNonContiguousTensors) {
  const torch::Tensor t = torch::arange(12, torch::kFloat32).view({3, 4}).t();
  write_tensors(path_, {{"t", t}});
  EXPECT_TRUE(torch::equal(read_tensor(path_, "t"), t));
}

TEST_F(BankTensorFile, ReadErrorsNameTheFileAndDataset) {
  EXPECT_THAT(error_of([&] { read_tensor(path_, "queries"); }),
              AllOf(HasSubstr(path_), HasSubstr("no such file")));
  std::ofstream(dir_.file("text.h5")) << "not hdf5";
  EXPECT_THAT(error_of([&] { read_tensor(dir_.file("text.h5"), "queries"); }),
              HasSubstr("not an HDF5 file"));

  write_tensors(path_, {{"queries", torch::zeros({2, 3})}});
  EXPECT_THAT(error_of([&] { read_tensor(path_, "keys"); }),
              AllOf(HasSubstr(path_), HasSubstr("dataset /keys is missing")));
  EXPECT_THAT(error_of([&] { read_tensor(path_, "group/keys"); }),
              HasSubstr("dataset /group/keys is missing (no /group)"));
}

TEST_F(BankTensorFile, RefusesUnsupportedStoredData) {
  {
    test::RawH5File raw(path_);
    raw.tensor("i32", torch::zeros({4}, torch::kInt32), H5::PredType::STD_I32LE);
    raw.tensor("rank3", torch::zeros({2, 2, 2}), H5::PredType::IEEE_F32LE);
    raw.file().createGroup("group");
  }
  EXPECT_THAT(error_of([&] { read_tensor(path_, "i32"); }),
              AllOf(HasSubstr(path_), HasSubstr("/i32 is stored as int32")));
  EXPECT_THAT(error_of([&] { read_tensor(path_, "rank3"); }),
              HasSubstr("/rank3 has shape [2, 2, 2], expected rank 1 or 2"));
  EXPECT_THAT(error_of([&] { read_tensor(path_, "group"); }), HasSubstr("/group is not a dataset"));
}

TEST_F(BankTensorFile, WriteRefusesBadArgumentsAndKeepsTheOldFile) {
  const torch::Tensor old = torch::arange(6, torch::kInt64);
  write_tensors(path_, {{"old", old}});
  const auto error = [&](std::vector<std::pair<std::string, torch::Tensor>> tensors) {
    return error_of([&] { write_tensors(path_, tensors); });
  };
  EXPECT_THAT(error({{"a", torch::zeros({2})}, {"/a", torch::zeros({2})}}),
              HasSubstr("/a is given twice"));
  EXPECT_THAT(error({{"x", torch::zeros({2}, torch::kInt32)}}),
              HasSubstr("/x has dtype int32, expected float32, float64 or int64"));
  EXPECT_THAT(error({{"x", torch::zeros({2, 2, 2})}}), HasSubstr("expected rank 1 or 2"));
  EXPECT_THAT(error({{"g/x", torch::zeros({2})}}), HasSubstr("must be a plain name"));
  EXPECT_THAT(error({{"x", torch::Tensor()}}), HasSubstr("/x is undefined"));
  EXPECT_TRUE(same_bits(read_tensor(path_, "old"), old));
}

// The file image (HDF5's in-memory driver) is written with plain POSIX calls: a failed write is
// reported by that writer, and the old file stays.
TEST_F(BankTensorFile, FailedHdf5WriteKeepsTheOldFile) {
  const torch::Tensor old = torch::arange(6, torch::kInt64);
  write_tensors(path_, {{"old", old}});
  fs::create_directory(atomic_temp_path(path_));
  EXPECT_THAT(error_of([&] {
                write_tensors(path_, {{"new", torch::zeros({3})}});
              }),
              AllOf(HasSubstr("cannot write " + path_), HasSubstr("Is a directory")));
  EXPECT_TRUE(same_bits(read_tensor(path_, "old"), old));
}

}  // namespace
}  // namespace kvtune

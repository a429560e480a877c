// Helpers for bank file tests: catching kvtune::Error messages, comparing banks exactly, and
// writing bank-shaped HDF5 files directly (bypassing write_bank's checks) to build bad files.
#pragma once

#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "bank/bank.h"
#include "common/check.h"

namespace kvtune::test {

// The message of the kvtune::Error that f throws; fails the test when f does not throw.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a kvtune::Error";
  return "";
}

// Same dtype, shape and bytes: stricter than torch::equal (which takes -0.0 == 0.0).
inline bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  // An empty tensor has no storage (data_ptr() is null, which memcmp must not be given).
  return ac.nbytes() == 0 || std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0;
}

inline void expect_same_bank(const Bank& got, const Bank& want) {
  EXPECT_TRUE(same_bits(got.keys, want.keys));
  EXPECT_TRUE(same_bits(got.values, want.values));
  EXPECT_TRUE(same_bits(got.slot_ids, want.slot_ids));
  EXPECT_TRUE(same_bits(got.usage, want.usage));
  EXPECT_EQ(got.meta.name, want.meta.name);
  EXPECT_EQ(got.meta.format_version, want.meta.format_version);
  EXPECT_EQ(got.meta.trainable, want.meta.trainable);
  EXPECT_EQ(got.meta.key_dim, want.meta.key_dim);
  EXPECT_EQ(got.meta.value_dim, want.meta.value_dim);
  EXPECT_EQ(got.meta.score_scale, want.meta.score_scale);
  EXPECT_EQ(got.meta.provenance, want.meta.provenance);
  EXPECT_EQ(got.meta.index_factory, want.meta.index_factory);
}

inline const H5::PredType& native_h5_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return H5::PredType::NATIVE_FLOAT;
    case torch::kFloat64:
      return H5::PredType::NATIVE_DOUBLE;
    case torch::kInt64:
      return H5::PredType::NATIVE_INT64;
    case torch::kInt32:
      return H5::PredType::NATIVE_INT32;
    default:
      throw std::invalid_argument("native_h5_type: unsupported dtype");
  }
}

// An HDF5 file written with H5Cpp alone, as another tool (h5py, a script) might write it.
class RawH5File {
 public:
  explicit RawH5File(const std::string& path) : file_(path, H5F_ACC_TRUNC) {}

  void tensor(const std::string& name, const torch::Tensor& t, const H5::PredType& file_type) {
    const torch::Tensor c = t.contiguous();
    std::vector<hsize_t> dims(c.sizes().begin(), c.sizes().end());
    H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
    H5::DataSet ds = file_.createDataSet(name, file_type, space);
    if (c.numel() > 0) ds.write(c.data_ptr(), native_h5_type(c.scalar_type()));
  }
  void int_attr(const std::string& name, int64_t v,
                const H5::PredType& file_type = H5::PredType::STD_I64LE) {
    scalar_attr(name, file_type).write(H5::PredType::NATIVE_INT64, &v);
  }
  void double_attr(const std::string& name, double v) {
    scalar_attr(name, H5::PredType::IEEE_F64BE).write(H5::PredType::NATIVE_DOUBLE, &v);
  }
  // Fixed length (kvtune writes variable length): both must read.
  void string_attr(const std::string& name, const std::string& s) {
    H5::StrType type(H5::PredType::C_S1, std::max<size_t>(1, s.size()));
    scalar_attr(name, type).write(type, s);
  }
  // h5py stores numpy bools as a one-byte enum {FALSE, TRUE}.
  void bool_attr(const std::string& name, bool v) {
    H5::EnumType type(sizeof(int8_t));
    int8_t f = 0, t = 1, value = v ? 1 : 0;
    type.insert("FALSE", &f);
    type.insert("TRUE", &t);
    scalar_attr(name, type).write(type, &value);
  }
  H5::H5File& file() { return file_; }

 private:
  H5::Attribute scalar_attr(const std::string& name, const H5::DataType& type) {
    return file_.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  }
  H5::H5File file_;
};

// Writes `b` in the bank layout with H5Cpp directly: no validation, so `b` may be invalid.
// Names in `skip` (datasets or attributes) are left out; `extra` then adds replacements.
inline void write_raw_bank(const std::string& path, const Bank& b,
                           const std::set<std::string>& skip = {},
                           const std::function<void(RawH5File&)>& extra = {}) {
  RawH5File raw(path);
  const auto want = [&](const std::string& name) { return skip.count(name) == 0; };
  if (want("format_version")) raw.int_attr("format_version", b.meta.format_version);
  if (want("key_dim")) raw.int_attr("key_dim", b.meta.key_dim);
  if (want("value_dim")) raw.int_attr("value_dim", b.meta.value_dim);
  if (want("name")) raw.string_attr("name", b.meta.name);
  if (want("trainable")) raw.int_attr("trainable", b.meta.trainable, H5::PredType::STD_I8LE);
  if (want("score_scale")) raw.double_attr("score_scale", b.meta.score_scale);
  if (want("provenance")) raw.string_attr("provenance", b.meta.provenance);
  if (want("index_factory")) raw.string_attr("index_factory", b.meta.index_factory);
  if (want("keys")) raw.tensor("keys", b.keys, H5::PredType::IEEE_F32LE);
  if (want("values")) raw.tensor("values", b.values, H5::PredType::IEEE_F32LE);
  if (want("slot_ids")) raw.tensor("slot_ids", b.slot_ids, H5::PredType::STD_I64LE);
  if (want("usage")) raw.tensor("usage", b.usage, H5::PredType::STD_I64LE);
  if (extra) extra(raw);
}

}  // namespace kvtune::test

// HDF5 helpers shared by bank_io.cpp and tensor_file.cpp: opening with clear errors, dtype and
// shape checks, tensor <-> dataset copies. Not part of the public interface.
#pragma once

#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kvtune::detail {

// Throws kvtune::Error unless `path` is an existing regular file with an HDF5 signature.
// `kind` ("bank", "tensor file") goes into the message.
void check_hdf5_file(const std::string& path, const std::string& kind);

// Opens read-only; a damaged or truncated file becomes a kvtune::Error naming the file.
H5::H5File open_hdf5_read(const std::string& path, const std::string& kind);

// The most specific message on HDF5's error stack (e.g. "truncated file: eof = ..."), falling
// back to the exception's own text. Call it inside the catch, before any other HDF5 call.
std::string hdf5_error_detail(const H5::Exception& e);

// "float32", "float64", "int64", ...: torch dtypes named as numpy and HDF5 users know them.
std::string dtype_name(torch::ScalarType t);

// "float32", "float64", "int32", "uint64", "string", ...: for messages.
std::string describe_type(const H5::DataType& type);

// The dtype kvtune reads for a stored type: kFloat32, kFloat64, kInt64, or Undefined when the
// stored type is anything else (int32, uint64, strings, compounds...).
torch::ScalarType torch_dtype_of(const H5::DataType& type);

std::vector<int64_t> dataset_shape(const H5::DataSet& ds);
std::string shape_string(const std::vector<int64_t>& shape);

// Reads a whole dataset into a new contiguous CPU tensor of `dtype` (HDF5 converts byte order).
torch::Tensor read_dataset(const H5::DataSet& ds, torch::ScalarType dtype,
                           const std::vector<int64_t>& shape);
// Rows [begin, begin + shape[0]) of `ds` (a hyperslab: the other rows are not read), into a new
// tensor of `shape` (the dataset's own shape but for its first dimension).
torch::Tensor read_dataset_rows(const H5::DataSet& ds, torch::ScalarType dtype, int64_t begin,
                                const std::vector<int64_t>& shape);

// Creates dataset `name` in `file` and writes `t` (contiguous CPU float32/float64/int64).
void write_dataset(H5::H5File& file, const std::string& name, const torch::Tensor& t);

// A new HDF5 file held in memory (the core driver, no backing store). HDF5 never writes to disk
// for it, so a full disk cannot fail inside HDF5, whose error path (a close that cannot flush)
// crashed at exit (issue 18, case 2). The price: the file's image is held in memory once more
// while it is written.
H5::H5File create_memory_file();

// Writes the image of a file from create_memory_file() to `path` with plain POSIX writes and
// fsyncs it, then closes `file`. A failed write (ENOSPC, EFBIG) is a kvtune::Error naming `path`.
void save_memory_file(H5::H5File& file, const std::string& path);

// The finished image of a memory file (create_memory_file), which is closed; `path` names the
// file it is for, in messages.
std::string memory_file_image(H5::H5File& file, const std::string& path);

// A read-only HDF5 file over `image` (HDF5 copies it). Only for images kvtune wrote itself.
H5::H5File open_memory_image(const std::string& image);

}  // namespace kvtune::detail

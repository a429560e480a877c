#include "bank/impl/hdf5_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/check.h"

namespace kvtune::detail {

void check_hdf5_file(const std::string& path, const std::string& kind) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  KVT_CHECK(fs::exists(status), kind, " ", path, ": no such file (check the path)");
  KVT_CHECK(fs::is_regular_file(status), kind, " ", path,
            ": not a regular file (give the path of an .h5 file)");
  bool is_hdf5 = false;
  try {
    is_hdf5 = H5::H5File::isHdf5(path);
  } catch (const H5::Exception& e) {
    KVT_THROW(kind, " ", path, ": cannot be read (", hdf5_error_detail(e),
              "): check its permissions");
  }
  KVT_CHECK(is_hdf5, kind, " ", path,
            ": not an HDF5 file (no HDF5 signature): give a file written by kvtune or h5py");
}

H5::H5File open_hdf5_read(const std::string& path, const std::string& kind) {
  check_hdf5_file(path, kind);
  try {
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    KVT_THROW(kind, " ", path, ": cannot be opened as HDF5 (", hdf5_error_detail(e),
              "): the file is damaged or truncated; write it again or restore a copy");
  }
}

namespace {
herr_t keep_first(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err->desc != nullptr) *static_cast<std::string*>(out) = err->desc;
  return 0;
}
}  // namespace

std::string hdf5_error_detail(const H5::Exception& e) {
  std::string innermost;
  // Upward: the first entry is the most specific one, where the error was detected.
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_first, &innermost);
  if (!innermost.empty()) return innermost;
  return e.getFuncName() + ": " + e.getDetailMsg();
}

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat64:
      return "float64";
    case torch::kInt64:
      return "int64";
    case torch::kInt32:
      return "int32";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    default:
      return c10::toString(t);
  }
}

std::string describe_type(const H5::DataType& type) {
  const size_t bits = type.getSize() * 8;
  switch (type.getClass()) {
    case H5T_INTEGER:
      return (H5Tget_sign(type.getId()) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
    case H5T_FLOAT:
      return "float" + std::to_string(bits);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "variable-length sequence";
    default:
      return "HDF5 type class " + std::to_string(static_cast<int>(type.getClass()));
  }
}

torch::ScalarType torch_dtype_of(const H5::DataType& type) {
  const size_t size = type.getSize();
  if (type.getClass() == H5T_FLOAT && size == 4) return torch::kFloat32;
  if (type.getClass() == H5T_FLOAT && size == 8) return torch::kFloat64;
  if (type.getClass() == H5T_INTEGER && size == 8 && H5Tget_sign(type.getId()) == H5T_SGN_2) {
    return torch::kInt64;
  }
  return torch::ScalarType::Undefined;
}

std::vector<int64_t> dataset_shape(const H5::DataSet& ds) {
  const H5::DataSpace space = ds.getSpace();
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  return std::vector<int64_t>(dims.begin(), dims.end());
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
const H5::PredType& native_type(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return H5::PredType::NATIVE_FLOAT;
    case torch::kFloat64:
      return H5::PredType::NATIVE_DOUBLE;
    case torch::kInt64:
      return H5::PredType::NATIVE_INT64;
    default:
      KVT_THROW("internal: no HDF5 type for torch dtype ", c10::toString(dtype));
  }
}

// Little-endian IEEE / two's complement on disk whatever the host: files move between machines.
const H5::PredType& file_type(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return H5::PredType::IEEE_F32LE;
    case torch::kFloat64:
      return H5::PredType::IEEE_F64LE;
    case torch::kInt64:
      return H5::PredType::STD_I64LE;
    default:
      KVT_THROW("internal: no HDF5 type for torch dtype ", c10::toString(dtype));
  }
}
}  // namespace

torch::Tensor read_dataset(const H5::DataSet& ds, torch::ScalarType dtype,
                           const std::vector<int64_t>& shape) {
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  // HDF5 wants a buffer even for zero elements; there is nothing to read then.
  if (t.numel() > 0) ds.read(t.data_ptr(), native_type(dtype));
  return t;
}

torch::Tensor read_dataset_rows(const H5::DataSet& ds, torch::ScalarType dtype, int64_t begin,
                                const std::vector<int64_t>& shape) {
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (t.numel() == 0) return t;
  std::vector<hsize_t> start(shape.size(), 0), count(shape.begin(), shape.end());
  start[0] = static_cast<hsize_t>(begin);
  H5::DataSpace file_space = ds.getSpace();
  file_space.selectHyperslab(H5S_SELECT_SET, count.data(), start.data());
  H5::DataSpace memory_space(static_cast<int>(count.size()), count.data());
  ds.read(t.data_ptr(), native_type(dtype), memory_space, file_space);
  return t;
}

void write_dataset(H5::H5File& file, const std::string& name, const torch::Tensor& t) {
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = file.createDataSet(name, file_type(t.scalar_type()), space);
  if (t.numel() > 0) ds.write(t.data_ptr(), native_type(t.scalar_type()));
}

H5::H5File create_memory_file() {
  static std::atomic<int64_t> counter{0};
  H5::FileAccPropList fapl;
  KVT_CHECK(H5Pset_fapl_core(fapl.getId(), 1 << 20, /*backing_store=*/0) >= 0,
            "HDF5: cannot select the in-memory driver");
  const std::string name =
      "kvtune-memory-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".h5";
  return H5::H5File(name, H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT, fapl);
}

std::string memory_file_image(H5::H5File& file, const std::string& path) {
  file.flush(H5F_SCOPE_LOCAL);
  const ssize_t size = H5Fget_file_image(file.getId(), nullptr, 0);
  KVT_CHECK(size > 0, "cannot write ", path, ": HDF5 gave no file image");
  std::string image(static_cast<size_t>(size), '\0');
  KVT_CHECK(H5Fget_file_image(file.getId(), image.data(), image.size()) == size, "cannot write ",
            path, ": HDF5 gave a short file image");
  file.close();
  return image;
}

H5::H5File open_memory_image(const std::string& image) {
  static std::atomic<int64_t> counter{0};
  H5::FileAccPropList fapl;
  KVT_CHECK(H5Pset_fapl_core(fapl.getId(), 1 << 20, /*backing_store=*/0) >= 0 &&
                H5Pset_file_image(fapl.getId(), const_cast<char*>(image.data()), image.size()) >= 0,
            "HDF5: cannot open a file image in memory");
  const std::string name =
      "kvtune-image-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".h5";
  return H5::H5File(name, H5F_ACC_RDONLY, H5::FileCreatPropList::DEFAULT, fapl);
}

void save_memory_file(H5::H5File& file, const std::string& path) {
  write_file_bytes(path, memory_file_image(file, path));
}

}  // namespace kvtune::detail

#include "bank/tensor_file.h"

#include <H5Cpp.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "bank/impl/hdf5_util.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/isolated_call.h"

namespace kvtune {

namespace {

// "/queries" and "queries" name the same dataset.
std::string strip_root(const std::string& name) {
  return !name.empty() && name[0] == '/' ? name.substr(1) : name;
}

bool supported(torch::ScalarType t) {
  return t == torch::kFloat32 || t == torch::kFloat64 || t == torch::kInt64;
}

// The tensor as bytes: dtype (int8), rank (int8), the sizes (int64 each), the contiguous data.
std::string tensor_bytes(const torch::Tensor& t) {
  const auto c = t.contiguous();
  std::string out;
  out.push_back(static_cast<char>(c.scalar_type()));
  out.push_back(static_cast<char>(c.dim()));
  for (const int64_t size : c.sizes()) out.append(reinterpret_cast<const char*>(&size), 8);
  out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  return out;
}

torch::Tensor tensor_from_bytes(const std::string& b, const std::string& path) {
  KVT_CHECK(b.size() >= 2, path, ": internal error: malformed answer of the tensor reader");
  const auto dtype = static_cast<torch::ScalarType>(b[0]);
  const int rank = b[1];
  KVT_CHECK(supported(dtype) && (rank == 1 || rank == 2) && b.size() >= 2 + 8u * rank, path,
            ": internal error: malformed answer of the tensor reader");
  std::vector<int64_t> sizes(rank);
  std::memcpy(sizes.data(), b.data() + 2, 8u * rank);
  auto t = torch::empty(sizes, torch::TensorOptions().dtype(dtype));
  KVT_CHECK(b.size() == 2 + 8u * rank + t.nbytes(), path,
            ": internal error: malformed answer of the tensor reader");
  // An empty tensor has no storage: memcpy must not get its null pointer.
  if (t.nbytes() > 0) std::memcpy(t.data_ptr(), b.data() + 2 + 8 * rank, t.nbytes());
  return t;
}

torch::Tensor read_tensor_direct(const std::string& path, const std::string& name);

}  // namespace

// HDF5 reads the user's file in a child process (common/isolated_call.h).
torch::Tensor read_tensor(const std::string& path, const std::string& name) {
  return tensor_from_bytes(
      isolated_call([&] { return tensor_bytes(read_tensor_direct(path, name)); },
                    "tensor file " + path, read_timeout_seconds(path)),
      path);
}

namespace {

torch::Tensor read_tensor_direct(const std::string& path, const std::string& name) {
  const std::string key = strip_root(name);
  KVT_CHECK(!key.empty(), "tensor file ", path, ": empty dataset name: give one, e.g. /queries");
  H5::Exception::dontPrint();
  const H5::H5File f = detail::open_hdf5_read(path, "tensor file");
  try {
    // Each level checked: HDF5 reports a missing parent group as an error, not as "absent".
    for (size_t slash = key.find('/');; slash = key.find('/', slash + 1)) {
      const std::string prefix = key.substr(0, slash);
      KVT_CHECK(f.nameExists(prefix), path, ": dataset /", key, " is missing (no /", prefix,
                "): check the name, e.g. with h5ls ", path);
      if (slash == std::string::npos) break;
    }
    KVT_CHECK(f.childObjType(key) == H5O_TYPE_DATASET, path, ": /", key,
              " is not a dataset (a group?): give the name of an array");
    const H5::DataSet ds = f.openDataSet(key);
    const H5::DataType type = ds.getDataType();
    const torch::ScalarType dtype = detail::torch_dtype_of(type);
    KVT_CHECK(dtype != torch::ScalarType::Undefined, path, ": dataset /", key, " is stored as ",
              detail::describe_type(type),
              ", expected float32, float64 or int64: convert it before writing");
    const std::vector<int64_t> shape = detail::dataset_shape(ds);
    KVT_CHECK(shape.size() == 1 || shape.size() == 2, path, ": dataset /", key, " has shape ",
              detail::shape_string(shape), ", expected rank 1 or 2");
    return detail::read_dataset(ds, dtype, shape);
  } catch (const H5::Exception& e) {
    KVT_THROW(path, ": HDF5 error reading dataset /", key, " (", detail::hdf5_error_detail(e),
              "): the file may be damaged");
  }
}

}  // namespace

void write_tensors(const std::string& path,
                   const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  // Everything is checked before the file is created: a bad argument leaves no partial file.
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    const std::string key = strip_root(name);
    KVT_CHECK(!key.empty() && key.find('/') == std::string::npos, "cannot write ", path,
              ": dataset name '", name, "' must be a plain name such as 'queries' (no groups)");
    KVT_CHECK(seen.insert(key).second, "cannot write ", path, ": dataset /", key,
              " is given twice: names must be unique");
    KVT_CHECK(t.defined(), "cannot write ", path, ": tensor for /", key, " is undefined");
    KVT_CHECK(supported(t.scalar_type()), "cannot write ", path, ": /", key, " has dtype ",
              detail::dtype_name(t.scalar_type()), ", expected float32, float64 or int64");
    KVT_CHECK(t.dim() == 1 || t.dim() == 2, "cannot write ", path, ": /", key, " has shape ",
              t.sizes(), ", expected rank 1 or 2");
  }
  torch::NoGradGuard no_grad;
  H5::Exception::dontPrint();
  AtomicOutput out(path);
  std::string current;
  try {
    H5::H5File f = detail::create_memory_file();  // written out below: no HDF5 disk I/O
    for (const auto& [name, t] : tensors) {
      current = strip_root(name);
      detail::write_dataset(f, current, t.detach().to(torch::kCPU).contiguous());
    }
    detail::save_memory_file(f, out.temp_path());
  } catch (const H5::Exception& e) {
    KVT_THROW("cannot write ", path, (current.empty() ? "" : ": dataset /"), current,
              ": HDF5 error (", detail::hdf5_error_detail(e),
              "): check the folder is writable and has space");
  }
  out.commit();
}

}  // namespace kvtune

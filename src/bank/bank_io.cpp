// Bank <-> HDF5. Layout, versioning and validation rules: docs/bank-format.md.
#include "bank/bank_io.h"

#include <H5Cpp.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "bank/impl/hdf5_util.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/isolated_call.h"
#include "common/resources.h"
#include "common/row_share.h"
#include "common/utf8.h"

namespace kvtune {

namespace {

using detail::describe_type;
using detail::shape_string;

void check_scalar_attr(const H5::Attribute& a, const std::string& path, const char* name) {
  KVT_CHECK(a.getSpace().getSimpleExtentNpoints() == 1, path, ": attribute ", name,
            " holds several values, expected a single one");
}

// Any integer type (h5py writes int64 for Python ints), or a one-byte enum (h5py's bool).
std::optional<int64_t> read_int_attr(const H5::H5Object& f, const std::string& path,
                                     const char* name) {
  if (!f.attrExists(name)) return std::nullopt;
  const H5::Attribute a = f.openAttribute(name);
  check_scalar_attr(a, path, name);
  const H5::DataType type = a.getDataType();
  if (type.getClass() == H5T_ENUM && type.getSize() == 1) {
    int8_t v = 0;
    a.read(type, &v);  // one byte: byte order does not matter
    return v;
  }
  KVT_CHECK(type.getClass() == H5T_INTEGER, path, ": attribute ", name, " is ", describe_type(type),
            ", expected an integer");
  int64_t v = 0;
  a.read(H5::PredType::NATIVE_INT64, &v);
  return v;
}

std::optional<double> read_float_attr(const H5::H5Object& f, const std::string& path,
                                      const char* name) {
  if (!f.attrExists(name)) return std::nullopt;
  const H5::Attribute a = f.openAttribute(name);
  check_scalar_attr(a, path, name);
  const H5::DataType type = a.getDataType();
  KVT_CHECK(type.getClass() == H5T_FLOAT || type.getClass() == H5T_INTEGER, path, ": attribute ",
            name, " is ", describe_type(type), ", expected a number (float64)");
  double v = 0.0;
  a.read(H5::PredType::NATIVE_DOUBLE, &v);
  return v;
}

// Fixed- or variable-length strings alike.
std::optional<std::string> read_string_attr(const H5::H5Object& f, const std::string& path,
                                            const char* name) {
  if (!f.attrExists(name)) return std::nullopt;
  const H5::Attribute a = f.openAttribute(name);
  check_scalar_attr(a, path, name);
  KVT_CHECK(a.getTypeClass() == H5T_STRING, path, ": attribute ", name, " is ",
            describe_type(a.getDataType()), ", expected a string");
  std::string s;
  a.read(a.getStrType(), s);
  return s;
}

int64_t require_int_attr(const H5::H5File& f, const std::string& path, const char* name) {
  const auto v = read_int_attr(f, path, name);
  KVT_CHECK(v.has_value(), path, ": required attribute ", name,
            " is missing from the root group: not a kvtune bank, or written without following "
            "docs/bank-format.md");
  return *v;
}

// Opens a dataset after checking it exists, is a dataset and has the one accepted dtype.
// No conversion on read: narrowing float64 or widening int32 would hide a writer's mistake and
// break bit-exact round trips.
H5::DataSet open_dataset(const H5::H5File& f, const std::string& path, const char* name,
                         torch::ScalarType want, const char* want_name, const char* fix) {
  const bool in_origin = std::string(name).rfind("origin/", 0) == 0;
  KVT_CHECK(f.nameExists(name), path, ": dataset /", name, " is missing: ",
            in_origin ? "a merged bank's /origin needs slot_id, source and source_slot_id"
                      : "a bank needs /keys, /values, /slot_ids and /usage",
            " (see docs/bank-format.md)");
  KVT_CHECK(f.childObjType(name) == H5O_TYPE_DATASET, path, ": /", name,
            " is not a dataset (a group or named type?): store the array itself under /", name);
  H5::DataSet ds = f.openDataSet(name);
  const H5::DataType type = ds.getDataType();
  KVT_CHECK(detail::torch_dtype_of(type) == want, path, ": /", name, " is stored as ",
            describe_type(type), ", expected ", want_name, ": ", fix);
  return ds;
}

void check_shape(const std::vector<int64_t>& shape, const std::vector<int64_t>& want,
                 const std::string& path, const char* name, const char* layout) {
  KVT_CHECK(shape == want, path, ": /", name, " has shape ", shape_string(shape), ", expected ",
            shape_string(want), " (", layout, ")");
}

// The N mismatch gets its own message when the rank is right; check_shape covers the rest.
void check_rows(const std::vector<int64_t>& shape, size_t rank, int64_t n, const std::string& path,
                const char* name) {
  KVT_CHECK(shape.size() != rank || shape[0] == n, path, ": /", name, " has ", shape[0],
            " rows but /keys has ", n, ": every dataset needs exactly one row per slot");
}

void write_scalar_attr(H5::H5File& f, const char* name, const H5::PredType& file_type,
                       const H5::PredType& mem_type, const void* value) {
  H5::Attribute a = f.createAttribute(name, file_type, H5::DataSpace(H5S_SCALAR));
  a.write(mem_type, value);
}

// Variable-length UTF-8: h5py reads it back as str.
void write_string_attr(H5::H5Object& f, const char* name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  H5::Attribute a = f.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  a.write(type, value);
}

// /origin (merged banks): the sources as a JSON attribute, three int64 datasets of R rows.
SlotOrigin read_origin(const H5::H5File& f, const std::string& path) {
  SlotOrigin o;
  if (!f.nameExists("origin")) return o;
  KVT_CHECK(f.childObjType("origin") == H5O_TYPE_GROUP, path,
            ": /origin is not a group: it must hold slot_id, source and source_slot_id "
            "(docs/bank-format.md, \"Slot origins\")");
  const H5::Group g = f.openGroup("origin");
  const auto text = read_string_attr(g, path, "sources");
  KVT_CHECK(text.has_value(), path,
            ": /origin has no attribute sources (a JSON list of {\"file\", \"name\"}): write "
            "it, or remove /origin");
  const auto fail = [&](const std::string& why) {
    KVT_THROW(path, ": /origin attribute sources ", why,
              ": it must be a JSON list of {\"file\": ..., \"name\": ...} objects");
  };
  nlohmann::json sources;
  try {
    sources = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("is not JSON (") + e.what() + ")");
  }
  if (!sources.is_array()) fail("is not a list");
  for (const auto& s : sources) {
    if (!s.is_object() || !s.contains("file") || !s.contains("name") || !s["file"].is_string() ||
        !s["name"].is_string()) {
      fail("has an entry " + dump_json(s) + " without string file and name");
    }
    o.sources.push_back({s["file"].get<std::string>(), s["name"].get<std::string>()});
  }
  const char* to_i64 = "convert it with astype('int64') before writing";
  H5::DataSet slot_id = open_dataset(f, path, "origin/slot_id", torch::kInt64, "int64", to_i64);
  H5::DataSet source = open_dataset(f, path, "origin/source", torch::kInt64, "int64", to_i64);
  H5::DataSet source_slot_id =
      open_dataset(f, path, "origin/source_slot_id", torch::kInt64, "int64", to_i64);
  const auto shape = detail::dataset_shape(slot_id);
  KVT_CHECK(shape.size() == 1, path, ": /origin/slot_id has shape ", shape_string(shape),
            ", expected [R]");
  const int64_t r = shape[0];
  check_fits_in_memory(checked_mul(r, 24),
                       path + ": /origin declares " + std::to_string(r) + " rows, which",
                       "the file is damaged, or read it on a machine with more memory");
  check_shape(detail::dataset_shape(source), {r}, path, "origin/source", "[R], as /origin/slot_id");
  check_shape(detail::dataset_shape(source_slot_id), {r}, path, "origin/source_slot_id",
              "[R], as /origin/slot_id");
  o.slot_id = detail::read_dataset(slot_id, torch::kInt64, {r});
  o.source = detail::read_dataset(source, torch::kInt64, {r});
  o.source_slot_id = detail::read_dataset(source_slot_id, torch::kInt64, {r});
  return o;
}

void write_origin(H5::H5File& f, const SlotOrigin& o) {
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& s : o.sources) sources.push_back({{"file", s.file}, {"name", s.name}});
  H5::Group g = f.createGroup("origin");
  write_string_attr(g, "sources", dump_json(sources));
  detail::write_dataset(f, "origin/slot_id", o.slot_id.contiguous());
  detail::write_dataset(f, "origin/source", o.source.contiguous());
  detail::write_dataset(f, "origin/source_slot_id", o.source_slot_id.contiguous());
}

// Rows of a bank to read: all of them, or one rank's share.
struct RowPick {
  int rank = 0;
  int world_size = 0;  // 0: every row
};

// Reads and checks the bank in `f`: the rows `pick` names, into `read` (its begin and total_rows
// set; the origin table only for every row).
void read_bank_contents(const H5::H5File& f, const std::string& path, const RowPick& pick,
                        BankShare& read) {
  // The version first: a newer layout may differ in everything below.
  const int64_t version = require_int_attr(f, path, "format_version");
  KVT_CHECK(version <= kBankFormatVersion, path, ": format_version ", version,
            " was written by a newer kvtune (this build reads versions up to ", kBankFormatVersion,
            "): upgrade kvtune to read it");
  KVT_CHECK(version >= 1, path, ": format_version ", version, " is invalid (versions start at 1)");
  const int64_t key_dim = require_int_attr(f, path, "key_dim");
  const int64_t value_dim = require_int_attr(f, path, "value_dim");
  KVT_CHECK(key_dim >= 1 && value_dim >= 1, path, ": attributes key_dim ", key_dim,
            " and value_dim ", value_dim, " must both be >= 1");

  const char* to_f32 = "convert it with astype('float32') before writing";
  const char* to_i64 = "convert it with astype('int64') before writing";
  H5::DataSet keys = open_dataset(f, path, "keys", torch::kFloat32, "float32", to_f32);
  H5::DataSet values = open_dataset(f, path, "values", torch::kFloat32, "float32", to_f32);
  H5::DataSet slot_ids = open_dataset(f, path, "slot_ids", torch::kInt64, "int64", to_i64);
  H5::DataSet usage = open_dataset(f, path, "usage", torch::kInt64, "int64", to_i64);

  const std::vector<int64_t> key_shape = detail::dataset_shape(keys);
  KVT_CHECK(key_shape.size() == 2, path, ": /keys has shape ", shape_string(key_shape),
            ", expected rank 2 [N, key_dim]");
  KVT_CHECK(key_shape[1] == key_dim, path, ": /keys has ", key_shape[1],
            " columns but attribute key_dim is ", key_dim,
            ": the attribute must equal the keys' width");
  const int64_t n = key_shape[0];
  const std::vector<int64_t> value_shape = detail::dataset_shape(values);
  const std::vector<int64_t> id_shape = detail::dataset_shape(slot_ids);
  const std::vector<int64_t> usage_shape = detail::dataset_shape(usage);
  check_rows(value_shape, 2, n, path, "values");
  check_rows(id_shape, 1, n, path, "slot_ids");
  check_rows(usage_shape, 1, n, path, "usage");
  KVT_CHECK(value_shape.size() != 2 || value_shape[1] == value_dim, path, ": /values has ",
            value_shape[1], " columns but attribute value_dim is ", value_dim,
            ": the attribute must equal the values' width");
  check_shape(value_shape, {n, value_dim}, path, "values", "[N, value_dim]");
  check_shape(id_shape, {n}, path, "slot_ids", "[N]");
  check_shape(usage_shape, {n}, path, "usage", "[N]");

  // The rows to read: all, or this rank's share.
  RowShare rows{0, n};
  if (pick.world_size > 0) {
    KVT_CHECK(n >= pick.world_size, path, ": the bank has ", n, " rows and cannot be split over ",
              pick.world_size,
              " ranks (every rank needs at least one row): run fewer processes, or leave the bank "
              "whole (train.shard_base_banks: false)");
    rows = row_share(n, pick.rank, pick.world_size);
  }
  read.begin = rows.begin;
  read.total_rows = n;
  const int64_t m_rows = rows.count;
  // Sizes declared in the file, checked before anything is allocated for them.
  const int64_t width =
      key_dim > (int64_t{1} << 40) || value_dim > (int64_t{1} << 40) ? -1 : key_dim + value_dim;
  const int64_t row_bytes = width < 0 ? -1 : 4 * width + 16;
  check_fits_in_memory(
      row_bytes < 0 ? -1 : checked_mul(m_rows, row_bytes),
      path + ": the bank declares " + std::to_string(n) + " slots of key_dim " +
          std::to_string(key_dim) + " and value_dim " + std::to_string(value_dim) +
          (m_rows == n ? std::string() : ", of which this rank reads " + std::to_string(m_rows)) +
          ", which",
      "the file is damaged, or read it on a machine with more memory");

  Bank& bank = read.bank;
  const int64_t b = rows.begin;
  bank.keys = detail::read_dataset_rows(keys, torch::kFloat32, b, {m_rows, key_dim});
  bank.values = detail::read_dataset_rows(values, torch::kFloat32, b, {m_rows, value_dim});
  bank.slot_ids = detail::read_dataset_rows(slot_ids, torch::kInt64, b, {m_rows});
  bank.usage = detail::read_dataset_rows(usage, torch::kInt64, b, {m_rows});

  BankMeta& m = bank.meta;
  m.format_version = static_cast<int>(version);
  m.key_dim = key_dim;
  m.value_dim = value_dim;
  m.name = read_string_attr(f, path, "name").value_or(std::filesystem::path(path).stem().string());
  KVT_CHECK(valid_utf8(m.name), path, ": the bank name '", escape_invalid_utf8(m.name),
            "' is not valid UTF-8 (invalid bytes shown as \\xHH): rewrite attribute name as "
            "UTF-8 text");
  const int64_t trainable = read_int_attr(f, path, "trainable").value_or(0);
  KVT_CHECK(trainable == 0 || trainable == 1, path, ": attribute trainable is ", trainable,
            ", expected 0 or 1");
  m.trainable = trainable == 1;
  m.score_scale = read_float_attr(f, path, "score_scale").value_or(0.0);
  m.provenance = read_string_attr(f, path, "provenance").value_or("");
  m.index_factory = read_string_attr(f, path, "index_factory").value_or("");
  m.model_fingerprint = read_string_attr(f, path, "model_fingerprint").value_or("");
  m.memory_layer = read_int_attr(f, path, "memory_layer").value_or(-1);
  KVT_CHECK(m.memory_layer >= -1, path, ": attribute memory_layer is ", m.memory_layer,
            ", expected a layer index >= 0 (or -1: none)");
  m.kind = read_string_attr(f, path, "kind").value_or("");
  KVT_CHECK(m.kind.empty() || m.kind == kBankKindPatch, path, ": attribute kind is '", m.kind,
            "', expected none (a bank) or '", kBankKindPatch, "' (a patch of a base bank)");
  // A share leaves the origin table out: its rows name slots of the whole bank.
  if (pick.world_size == 0) bank.origin = read_origin(f, path);
}

// The bank as the bytes of an HDF5 file (the current layout), built in memory: write_bank writes
// them out (after its checks), read_bank's child sends them back (the bank it just validated).
// `path` names the destination in messages.
std::string bank_file_image(const Bank& bank, const std::string& index_id,
                            const std::string& path) {
  const BankMeta& m = bank.meta;
  torch::NoGradGuard no_grad;
  const auto host = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU).contiguous(); };

  H5::Exception::dontPrint();
  try {
    H5::H5File f = detail::create_memory_file();  // written out below: no HDF5 disk I/O
    // Always the current layout, whatever version the bank was read from.
    const int32_t version = kBankFormatVersion;
    const int8_t trainable = m.trainable ? 1 : 0;
    write_scalar_attr(f, "format_version", H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32,
                      &version);
    write_string_attr(f, "name", m.name);
    write_scalar_attr(f, "trainable", H5::PredType::STD_I8LE, H5::PredType::NATIVE_INT8,
                      &trainable);
    write_scalar_attr(f, "key_dim", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                      &m.key_dim);
    write_scalar_attr(f, "value_dim", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                      &m.value_dim);
    write_scalar_attr(f, "score_scale", H5::PredType::IEEE_F64LE, H5::PredType::NATIVE_DOUBLE,
                      &m.score_scale);
    write_string_attr(f, "provenance", m.provenance);
    write_string_attr(f, "index_factory", m.index_factory);
    write_string_attr(f, "model_fingerprint", m.model_fingerprint);
    write_scalar_attr(f, "memory_layer", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                      &m.memory_layer);
    write_string_attr(f, "kvtune_version", KVTUNE_VERSION);
    if (!m.kind.empty()) write_string_attr(f, "kind", m.kind);
    if (!index_id.empty()) write_string_attr(f, "index_id", index_id);

    detail::write_dataset(f, "keys", host(bank.keys));
    detail::write_dataset(f, "values", host(bank.values));
    detail::write_dataset(f, "slot_ids", host(bank.slot_ids));
    detail::write_dataset(f, "usage", host(bank.usage));
    if (bank.origin.defined()) write_origin(f, bank.origin);
    return detail::memory_file_image(f, path);
  } catch (const H5::Exception& e) {
    KVT_THROW("cannot write bank ", path, ": HDF5 error building the file (",
              detail::hdf5_error_detail(e), ")");
  }
}

// The bank's file read and checked here, in this process. Only inside isolated_call.
BankShare read_bank_direct(const std::string& path, const RowPick& pick) {
  H5::Exception::dontPrint();
  const H5::H5File file = detail::open_hdf5_read(path, "bank");
  BankShare read;
  try {
    read_bank_contents(file, path, pick, read);
  } catch (const H5::Exception& e) {
    KVT_THROW(path, ": HDF5 error while reading the bank (", detail::hdf5_error_detail(e),
              "): the file may be damaged; write it again or restore a copy");
  }
  // Non-unit keys are refused, never normalized here: that would change the scores the bank was
  // trained with.
  validate_bank(read.bank, path);
  return read;
}

// HDF5 reads the user's file in a child process (common/isolated_call.h). The child sends back
// the validated rows through a memory file (isolated_call_bulk): the four row tensors raw, and
// the rest (attributes, slot origins) as the image of an HDF5 file kvtune itself wrote, for the
// same bank with no rows. The tensors here point into the mapped memory file: nothing large is
// copied on the way back, and a trainable bank's rows are copied only where they are written.
BankShare read_bank_isolated(const std::string& path, const RowPick& pick) {
  // Answer: "<format version of the file> <begin> <total rows> <rows> <offset of keys> <of values>
  // <of slot ids> <of usage>\n<image>"; the image is always the current layout.
  IsolatedResult result = isolated_call_bulk(
      [&](BulkSink& sink) {
        const BankShare read = read_bank_direct(path, pick);
        const Bank& b = read.bank;
        std::string offsets;
        for (const auto* t : {&b.keys, &b.values, &b.slot_ids, &b.usage}) {
          const auto c = t->contiguous();
          offsets += " " + std::to_string(sink.append(c.data_ptr(), c.nbytes()));
        }
        Bank skeleton = b;
        skeleton.keys = b.keys.narrow(0, 0, 0);
        skeleton.values = b.values.narrow(0, 0, 0);
        skeleton.slot_ids = b.slot_ids.narrow(0, 0, 0);
        skeleton.usage = b.usage.narrow(0, 0, 0);
        return std::to_string(b.meta.format_version) + " " + std::to_string(read.begin) + " " +
               std::to_string(read.total_rows) + " " + std::to_string(b.size()) + offsets + "\n" +
               bank_file_image(skeleton, "", path);
      },
      "bank " + path, read_timeout_seconds(path));
  std::string& answer = result.answer;
  const size_t newline = answer.find('\n');
  int version = 0;
  long long begin = -1, total = -1, rows = -1, at[4] = {-1, -1, -1, -1};
  KVT_CHECK(
      newline != std::string::npos && newline < 256 &&
          std::sscanf(answer.substr(0, newline).c_str(), "%d %lld %lld %lld %lld %lld %lld %lld",
                      &version, &begin, &total, &rows, &at[0], &at[1], &at[2], &at[3]) == 8,
      path, ": internal error: malformed answer of the bank reader");
  H5::Exception::dontPrint();
  BankShare read;
  try {
    H5::H5File file = detail::open_memory_image(answer.substr(newline + 1));
    read_bank_contents(file, path, RowPick{}, read);
  } catch (const H5::Exception& e) {
    KVT_THROW(path, ": HDF5 error while reading the bank (", detail::hdf5_error_detail(e), ")");
  }
  // The rows, in the memory file; each tensor keeps the mapping alive.
  const std::shared_ptr<SharedBytes> bulk = result.bulk;
  Bank& b = read.bank;
  const auto view = [&](int i, std::vector<int64_t> shape, torch::ScalarType dtype) {
    int64_t count = 1;
    for (const int64_t d : shape) count *= d;
    const size_t bytes = static_cast<size_t>(count) * torch::elementSize(dtype);
    KVT_CHECK(at[i] >= 0 && static_cast<size_t>(at[i]) + bytes <= bulk->size(), path,
              ": internal error: the bank reader's rows do not fit what it sent");
    return torch::from_blob(
        bulk->data() + at[i], shape, [bulk](void*) {}, torch::TensorOptions().dtype(dtype));
  };
  b.keys = view(0, {rows, b.meta.key_dim}, torch::kFloat32);
  b.values = view(1, {rows, b.meta.value_dim}, torch::kFloat32);
  b.slot_ids = view(2, {rows}, torch::kInt64);
  b.usage = view(3, {rows}, torch::kInt64);
  read.bank.meta.format_version = version;
  read.begin = begin;
  read.total_rows = total;
  return read;
}

}  // namespace

Bank read_bank(const std::string& path) {
  return read_bank_isolated(path, RowPick{}).bank;
}

BankShare read_bank_share(const std::string& path, int rank, int world_size) {
  KVT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "read_bank_share: rank ", rank,
            " of ", world_size);
  return read_bank_isolated(path, RowPick{rank, world_size});
}

std::optional<std::string> read_bank_index_id(const std::string& path) {
  // "-": not readable; otherwise the id ("" when none is recorded).
  std::string id;
  try {
    id = isolated_call(
        [&]() -> std::string {
          H5::Exception::dontPrint();
          try {
            detail::check_hdf5_file(path, "bank");
            const H5::H5File f(path, H5F_ACC_RDONLY);
            return read_string_attr(f, path, "index_id").value_or("");
          } catch (const H5::Exception&) {
            return "-";
          } catch (const Error&) {
            return "-";
          }
        },
        "bank " + path, read_timeout_seconds(path));
  } catch (const Error&) {
    return std::nullopt;
  }
  if (id == "-") return std::nullopt;
  return id;
}

bool is_bank_file(const std::string& path) {
  try {
    return isolated_call(
               [&]() -> std::string {
                 H5::Exception::dontPrint();
                 try {
                   detail::check_hdf5_file(path, "bank");
                   const H5::H5File f(path, H5F_ACC_RDONLY);
                   return f.attrExists("format_version") ? "1" : "0";
                 } catch (const H5::Exception&) {
                   return "0";
                 } catch (const Error&) {
                   return "0";
                 }
               },
               "bank " + path, read_timeout_seconds(path)) == "1";
  } catch (const Error&) {
    return false;  // HDF5 crashed on it: not a bank kvtune can read
  }
}

void write_bank(const std::string& path, const Bank& bank) {
  write_bank(path, bank, "");
}

void write_bank(const std::string& path, const Bank& bank, const std::string& index_id) {
  const BankMeta& m = bank.meta;
  const std::string where = "cannot write bank '" + m.name + "' to " + path;
  validate_bank(bank, where);
  const auto check_no_nul = [&](const char* name, const std::string& s) {
    KVT_CHECK(s.find('\0') == std::string::npos, where, ": meta ", name,
              " contains a NUL character, which HDF5 strings cannot hold: remove it");
  };
  check_no_nul("name", m.name);
  check_no_nul("provenance", m.provenance);
  check_no_nul("index_factory", m.index_factory);
  check_no_nul("model_fingerprint", m.model_fingerprint);
  KVT_CHECK(valid_utf8(m.name), where, ": the bank name '", escape_invalid_utf8(m.name),
            "' is not valid UTF-8 (invalid bytes shown as \\xHH): give a UTF-8 name (--name)");
  KVT_CHECK(valid_utf8(m.provenance), where,
            ": meta provenance is not valid UTF-8: it must be UTF-8 text (JSON)");
  AtomicOutput out(path);
  const std::string image = bank_file_image(bank, index_id, path);
  write_file_bytes(out.temp_path(), image);
  out.commit();
}

}  // namespace kvtune

#include "bank/bank.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "bank/impl/hdf5_util.h"
#include "common/check.h"

namespace kvtune {

double Bank::effective_scale() const {
  if (meta.score_scale != 0.0) return meta.score_scale;
  KVT_CHECK(meta.key_dim > 0, "bank '", meta.name, "': key_dim is ", meta.key_dim,
            ", so the default scale sqrt(key_dim) is undefined: set key_dim or score_scale");
  return std::sqrt(static_cast<double>(meta.key_dim));
}

namespace {

using detail::dtype_name;

void check_tensor(const torch::Tensor& t, const char* name, torch::ScalarType dtype, int64_t rank,
                  const char* shape, const std::string& where) {
  KVT_CHECK(t.defined(), where, ": ", name, " is missing (undefined tensor): set it to a ", shape,
            " ", dtype_name(dtype), " tensor");
  KVT_CHECK(t.scalar_type() == dtype, where, ": ", name, " has dtype ", dtype_name(t.scalar_type()),
            ", expected ", dtype_name(dtype), ": convert it to ", dtype_name(dtype));
  KVT_CHECK(t.dim() == rank, where, ": ", name, " has shape ", t.sizes(), ", expected ", shape);
}

// Rows per chunk so that checks on a 2^20-row bank never allocate full-size temporaries.
int64_t chunk_rows(const torch::Tensor& t) {
  return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, t.size(1)));
}

// Throws on the first non-finite element of a 2-D float tensor.
void check_finite(const torch::Tensor& t, const char* name, const std::string& where) {
  const int64_t step = chunk_rows(t);
  for (int64_t start = 0; start < t.size(0); start += step) {
    const torch::Tensor chunk = t.slice(0, start, std::min(start + step, t.size(0)));
    const torch::Tensor bad = torch::isfinite(chunk).logical_not_();
    if (!bad.any().item<bool>()) continue;
    const torch::Tensor first = bad.nonzero()[0];
    const int64_t row = start + first[0].item<int64_t>();
    const int64_t col = first[1].item<int64_t>();
    KVT_THROW(where, ": ", name, " row ", row, " column ", col, " is ", t[row][col].item<float>(),
              ", expected a finite number: fix or drop that slot");
  }
}

void check_unit_rows(const torch::Tensor& keys, const std::string& where) {
  const int64_t step = chunk_rows(keys);
  for (int64_t start = 0; start < keys.size(0); start += step) {
    const torch::Tensor chunk = keys.slice(0, start, std::min(start + step, keys.size(0)));
    // float64 norms: the tolerance must not be eaten by float32 summation error.
    const torch::Tensor dev = chunk.to(torch::kFloat64).norm(2, 1).sub_(1.0).abs_();
    const torch::Tensor bad = dev.gt(kUnitNormTolerance);
    if (!bad.any().item<bool>()) continue;
    const int64_t row = bad.nonzero()[0][0].item<int64_t>();
    const double norm = chunk[row].to(torch::kFloat64).norm().item<double>();
    KVT_THROW(where, ": /keys row ", start + row, " has norm ", norm,
              ", expected unit norm (|norm-1| <= ", kUnitNormTolerance,
              "): normalize keys before writing");
  }
}

void check_unique_ids(const torch::Tensor& ids, const std::string& where) {
  if (ids.size(0) < 2) return;
  const torch::Tensor sorted = std::get<0>(ids.sort());
  const torch::Tensor same = sorted.slice(0, 1).eq(sorted.slice(0, 0, -1));
  if (!same.any().item<bool>()) return;
  const int64_t id = sorted[same.nonzero()[0][0]].item<int64_t>();
  const torch::Tensor rows = ids.eq(id).nonzero().flatten();
  KVT_THROW(where, ": /slot_ids has duplicate id ", id, " (rows ", rows[0].item<int64_t>(), " and ",
            rows[1].item<int64_t>(), "): slot ids must be unique; renumber or drop one slot");
}

}  // namespace

void validate_bank(const Bank& bank, const std::string& where) {
  torch::NoGradGuard no_grad;  // trainable banks may hold tensors that require grad
  const BankMeta& m = bank.meta;
  check_tensor(bank.keys, "/keys", torch::kFloat32, 2, "[N, key_dim]", where);
  check_tensor(bank.values, "/values", torch::kFloat32, 2, "[N, value_dim]", where);
  check_tensor(bank.slot_ids, "/slot_ids", torch::kInt64, 1, "[N]", where);
  check_tensor(bank.usage, "/usage", torch::kInt64, 1, "[N]", where);

  const int64_t n = bank.keys.size(0);
  const std::pair<const char*, const torch::Tensor*> others[] = {
      {"/values", &bank.values}, {"/slot_ids", &bank.slot_ids}, {"/usage", &bank.usage}};
  for (const auto& [name, t] : others) {
    KVT_CHECK(t->size(0) == n, where, ": ", name, " has ", t->size(0), " rows but /keys has ", n,
              ": every dataset needs exactly one row per slot");
  }

  KVT_CHECK(m.key_dim >= 1 && m.value_dim >= 1, where, ": key_dim ", m.key_dim, " and value_dim ",
            m.value_dim, " must both be >= 1");
  KVT_CHECK(bank.keys.size(1) == m.key_dim, where, ": /keys has ", bank.keys.size(1),
            " columns but key_dim is ", m.key_dim, ": key_dim must equal the keys' width");
  KVT_CHECK(bank.values.size(1) == m.value_dim, where, ": /values has ", bank.values.size(1),
            " columns but value_dim is ", m.value_dim, ": value_dim must equal the values' width");
  KVT_CHECK(std::isfinite(m.score_scale) && m.score_scale >= 0.0, where, ": score_scale is ",
            m.score_scale, ", expected a finite value >= 0 (0 means sqrt(key_dim))");

  check_finite(bank.keys, "/keys", where);
  check_unit_rows(bank.keys, where);
  check_finite(bank.values, "/values", where);

  const torch::Tensor negative = bank.usage.lt(0);
  if (negative.any().item<bool>()) {
    const int64_t row = negative.nonzero()[0][0].item<int64_t>();
    KVT_THROW(where, ": /usage row ", row, " is ", bank.usage[row].item<int64_t>(),
              ", expected a count >= 0");
  }
  check_unique_ids(bank.slot_ids, where);
}

Bank make_random_bank(const std::string& name, int64_t n, int64_t key_dim, int64_t value_dim,
                      uint64_t seed, bool trainable, double value_std) {
  KVT_CHECK(n >= 0, "make_random_bank '", name, "': n is ", n, ", expected >= 0");
  KVT_CHECK(key_dim >= 1 && value_dim >= 1, "make_random_bank '", name, "': key_dim ", key_dim,
            " and value_dim ", value_dim, " must both be >= 1");
  KVT_CHECK(std::isfinite(value_std) && value_std >= 0.0, "make_random_bank '", name,
            "': value_std is ", value_std, ", expected a finite value >= 0");
  torch::NoGradGuard no_grad;
  // A local generator: the result depends on `seed` only, never on torch's global seed.
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);

  Bank bank;
  bank.keys = torch::randn({n, key_dim}, gen, f32);
  // In place, with only an [N, 1] temporary: this runs on 2^20 x 64 banks in benchmarks.
  bank.keys.div_(bank.keys.norm(2, /*dim=*/1, /*keepdim=*/true).clamp_min_(1e-30));
  bank.values = torch::randn({n, value_dim}, gen, f32).mul_(value_std);
  bank.slot_ids = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64));
  bank.usage = torch::zeros({n}, torch::TensorOptions().dtype(torch::kInt64));

  bank.meta.name = name;
  bank.meta.trainable = trainable;
  bank.meta.key_dim = key_dim;
  bank.meta.value_dim = value_dim;
  bank.meta.provenance =
      nlohmann::json{{"source", "make_random_bank"}, {"seed", seed}, {"value_std", value_std}}
          .dump();
  return bank;
}

std::string index_path_for(const std::string& bank_path) {
  std::filesystem::path p(bank_path);
  KVT_CHECK(p.has_filename(), "cannot derive an index path from '", bank_path,
            "': give the bank's file name, e.g. bank.h5");
  return p.replace_extension(".faiss").string();
}

}  // namespace kvtune

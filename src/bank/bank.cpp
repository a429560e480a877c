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

// Throws on the first non-finite element of a 2-D float32 tensor, then, when `unit`, on the first
// row whose norm is not 1. One pass over raw memory: a row's sum of squares in double is finite
// exactly when every element is (a float32 squared is below 1e77), and that sum vectorizes where a
// test per element does not; only a row that fails is searched for its element. The same sum
// gives the norm, in float64 so that the tolerance is not eaten by float32 summation error. A
// bank of 2^20 rows is checked at memory speed, in the reading child's single thread too.
void check_rows(const torch::Tensor& t, const char* name, bool unit, const std::string& where) {
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  const float* p = c.data_ptr<float>();
  const int64_t rows = c.size(0), cols = c.size(1);
  int64_t bad_norm_row = -1;
  double bad_norm = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* r = p + i * cols;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < cols; ++j) ss += static_cast<double>(r[j]) * r[j];
    if (!std::isfinite(ss)) {
      for (int64_t j = 0; j < cols; ++j) {
        if (std::isfinite(r[j])) continue;
        KVT_THROW(where, ": ", name, " row ", i, " column ", j, " is ", r[j],
                  ", expected a finite number: fix or drop that slot");
      }
    }
    const double norm = std::sqrt(ss);
    if (unit && bad_norm_row < 0 && !(std::abs(norm - 1.0) <= kUnitNormTolerance)) {
      bad_norm_row = i;
      bad_norm = norm;
    }
  }
  KVT_CHECK(bad_norm_row < 0, where, ": ", name, " row ", bad_norm_row, " has norm ", bad_norm,
            ", expected unit norm (|norm-1| <= ", kUnitNormTolerance,
            "): normalize keys before writing");
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

// Every origin row names a slot of the bank and a known source; every slot has a row.
void check_origin(const Bank& bank, const std::string& where) {
  const SlotOrigin& o = bank.origin;
  if (!o.defined()) return;
  check_tensor(o.slot_id, "/origin/slot_id", torch::kInt64, 1, "[R]", where);
  check_tensor(o.source, "/origin/source", torch::kInt64, 1, "[R]", where);
  check_tensor(o.source_slot_id, "/origin/source_slot_id", torch::kInt64, 1, "[R]", where);
  const int64_t r = o.slot_id.size(0);
  KVT_CHECK(o.source.size(0) == r && o.source_slot_id.size(0) == r, where,
            ": /origin/slot_id, /origin/source and /origin/source_slot_id have ", r, ", ",
            o.source.size(0), " and ", o.source_slot_id.size(0),
            " rows: they need one row per source slot each");
  const int64_t s = static_cast<int64_t>(o.sources.size());
  const torch::Tensor bad_source = o.source.lt(0).logical_or_(o.source.ge(s));
  if (bad_source.any().item<bool>()) {
    const int64_t row = bad_source.nonzero()[0][0].item<int64_t>();
    KVT_THROW(where, ": /origin/source row ", row, " is ", o.source[row].item<int64_t>(),
              " but there are ", s, " sources: indexes run from 0 to ", s - 1);
  }
  const int64_t n = bank.slot_ids.size(0);
  if (n == 0) {
    KVT_CHECK(r == 0, where, ": /origin has ", r, " rows but the bank has no slot");
    return;
  }
  const torch::Tensor sorted = std::get<0>(bank.slot_ids.sort());
  const torch::Tensor pos = torch::searchsorted(sorted, o.slot_id).clamp_max_(n - 1);
  const torch::Tensor unknown = sorted.index_select(0, pos).ne(o.slot_id);
  if (unknown.any().item<bool>()) {
    const int64_t row = unknown.nonzero()[0][0].item<int64_t>();
    KVT_THROW(where, ": /origin/slot_id row ", row, " names slot id ",
              o.slot_id[row].item<int64_t>(),
              ", which is not in /slot_ids: origins must describe this bank's own slots");
  }
  torch::Tensor covered = torch::zeros({n}, torch::kBool);
  covered.index_fill_(0, pos, true);
  if (!covered.all().item<bool>()) {
    const int64_t id = sorted[covered.logical_not().nonzero()[0][0]].item<int64_t>();
    KVT_THROW(where, ": slot id ", id,
              " has no row in /origin: every slot of a merged bank needs at least one");
  }
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

  check_rows(bank.keys, "/keys", /*unit=*/true, where);
  check_rows(bank.values, "/values", /*unit=*/false, where);

  const torch::Tensor negative = bank.usage.lt(0);
  if (negative.any().item<bool>()) {
    const int64_t row = negative.nonzero()[0][0].item<int64_t>();
    KVT_THROW(where, ": /usage row ", row, " is ", bank.usage[row].item<int64_t>(),
              ", expected a count >= 0");
  }
  check_unique_ids(bank.slot_ids, where);
  check_origin(bank, where);
}

Bank select_rows(const Bank& bank, const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  Bank out;
  out.keys = bank.keys.detach().index_select(0, rows);
  out.values = bank.values.detach().index_select(0, rows);
  out.slot_ids = bank.slot_ids.index_select(0, rows);
  out.usage = bank.usage.index_select(0, rows);
  out.meta = bank.meta;
  const SlotOrigin& o = bank.origin;
  if (!o.defined()) return out;
  const torch::Tensor kept = torch::isin(o.slot_id, out.slot_ids).nonzero().flatten();
  const torch::Tensor source = o.source.index_select(0, kept);
  // Sources no slot comes from any more are dropped, the others renumbered in order.
  std::vector<int64_t> remap(o.sources.size(), -1);
  const auto* src = source.data_ptr<int64_t>();
  for (int64_t i = 0; i < source.numel(); ++i) remap[static_cast<size_t>(src[i])] = 0;
  for (size_t s = 0; s < remap.size(); ++s) {
    if (remap[s] < 0) continue;
    remap[s] = static_cast<int64_t>(out.origin.sources.size());
    out.origin.sources.push_back(o.sources[s]);
  }
  out.origin.slot_id = o.slot_id.index_select(0, kept);
  out.origin.source_slot_id = o.source_slot_id.index_select(0, kept);
  out.origin.source = torch::tensor(remap, torch::kInt64).index_select(0, source);
  return out;
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

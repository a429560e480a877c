#include "bank/bank_patch.h"

#include <map>

#include "common/check.h"

namespace kvtune {

Bank make_patch(const Bank& tuned, const torch::Tensor& rows, const std::string& name,
                const std::string& fingerprint, int64_t layer, const std::string& provenance) {
  Bank patch = select_rows(tuned, rows.to(torch::kInt64));
  patch.keys = patch.keys.detach().clone();
  patch.values = patch.values.detach().clone();
  patch.origin = SlotOrigin{};
  patch.meta.name = name;
  patch.meta.kind = kBankKindPatch;
  patch.meta.trainable = false;
  patch.meta.model_fingerprint = fingerprint;
  patch.meta.memory_layer = layer;
  patch.meta.provenance = provenance;
  patch.meta.index_factory.clear();
  return patch;
}

bool apply_patch_rows(Bank& base, const Bank& patch, const std::string& where) {
  KVT_CHECK(patch.meta.kind == kBankKindPatch, where, ": not a patch (meta kind '", patch.meta.kind,
            "')");
  KVT_CHECK(patch.meta.key_dim == base.meta.key_dim && patch.meta.value_dim == base.meta.value_dim,
            where, ": the patch has key_dim ", patch.meta.key_dim, " and value_dim ",
            patch.meta.value_dim, " but the base bank '", base.meta.name, "' has ",
            base.meta.key_dim, " and ", base.meta.value_dim);
  std::map<int64_t, int64_t> row_of;
  const auto ids = base.slot_ids.contiguous();
  for (int64_t r = 0; r < ids.size(0); ++r) row_of[ids.data_ptr<int64_t>()[r]] = r;
  const auto pids = patch.slot_ids.contiguous();
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < pids.size(0); ++i) {
    const auto it = row_of.find(pids.data_ptr<int64_t>()[i]);
    KVT_CHECK(it != row_of.end(), where, ": the patch changes slot ", pids.data_ptr<int64_t>()[i],
              ", which base bank '", base.meta.name, "' does not have: apply it to its own base");
    rows.push_back(it->second);
  }
  if (rows.empty()) return false;
  torch::NoGradGuard no_grad;
  const auto r = torch::tensor(rows, torch::kInt64);
  const bool keys_changed = !base.keys.index_select(0, r).equal(patch.keys);
  base.keys.index_copy_(0, r, patch.keys.to(base.keys.scalar_type()));
  base.values.index_copy_(0, r, patch.values.to(base.values.scalar_type()));
  return keys_changed;
}

nlohmann::json to_json(const PatchMergeReport& r) {
  return {{"patches", r.patches},
          {"slots_out", r.slots_out},
          {"conflicting_slots", r.conflicting_slots}};
}

Bank merge_patches(const std::vector<std::pair<std::string, Bank>>& patches,
                   const std::string& name, PatchMergeReport* report) {
  KVT_CHECK(!patches.empty(), "merge: no patches given");
  const Bank& first = patches.front().second;
  for (const auto& [file, p] : patches) {
    KVT_CHECK(p.meta.kind == kBankKindPatch, "merge: ", file,
              " is a bank, not a patch: merge patches with patches and banks with banks");
    KVT_CHECK(p.meta.model_fingerprint == first.meta.model_fingerprint &&
                  p.meta.memory_layer == first.meta.memory_layer,
              "merge: ", file, " patches model ", p.meta.model_fingerprint, " layer ",
              p.meta.memory_layer, " but ", patches.front().first, " patches model ",
              first.meta.model_fingerprint, " layer ", first.meta.memory_layer,
              ": patches merge only when they change the same base bank");
    KVT_CHECK(p.meta.key_dim == first.meta.key_dim && p.meta.value_dim == first.meta.value_dim,
              "merge: ", file, " has other key/value dims than ", patches.front().first);
  }
  torch::NoGradGuard no_grad;
  struct Acc {
    torch::Tensor key, value;
    int64_t usage = 0;
    int count = 0;
  };
  std::map<int64_t, Acc> slots;
  for (const auto& [file, p] : patches) {
    for (int64_t i = 0; i < p.size(); ++i) {
      const int64_t id = p.slot_ids[i].item<int64_t>();
      auto& a = slots[id];
      const auto k = p.keys[i].to(torch::kFloat64), v = p.values[i].to(torch::kFloat64);
      a.key = a.count == 0 ? k.clone() : a.key + k;
      a.value = a.count == 0 ? v.clone() : a.value + v;
      a.usage += p.usage[i].item<int64_t>();
      ++a.count;
    }
  }
  const auto n = static_cast<int64_t>(slots.size());
  Bank out;
  out.meta = first.meta;
  out.meta.name = name;
  out.keys = torch::empty({n, first.meta.key_dim}, torch::kFloat32);
  out.values = torch::empty({n, first.meta.value_dim}, torch::kFloat32);
  out.slot_ids = torch::empty({n}, torch::kInt64);
  out.usage = torch::empty({n}, torch::kInt64);
  PatchMergeReport rep;
  rep.patches = static_cast<int64_t>(patches.size());
  int64_t row = 0;
  for (const auto& [id, a] : slots) {
    auto key = a.key / a.count;
    if (a.count > 1) key = key / key.norm().clamp_min(1e-12);
    out.keys[row].copy_(key);
    out.values[row].copy_(a.value / a.count);
    out.slot_ids[row] = id;
    out.usage[row] = a.usage;
    if (a.count > 1) ++rep.conflicting_slots;
    ++row;
  }
  rep.slots_out = n;
  nlohmann::json prov = {{"merged_patches", nlohmann::json::array()}};
  for (const auto& [file, p] : patches) prov["merged_patches"].push_back(file);
  out.meta.provenance = prov.dump();
  if (report) *report = rep;
  validate_bank(out, "merged patch '" + name + "'");
  return out;
}

}  // namespace kvtune

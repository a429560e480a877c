#include "bank/bank_merge.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "common/check.h"
#include "common/utf8.h"

namespace kvtune {

namespace {

// One source slot: where its data lie and where it came from ((source, source slot id) pairs,
// indexes into the sorted source table).
struct Row {
  const float* key;
  const float* value;
  int64_t usage;
  std::vector<std::pair<int64_t, int64_t>> origin;
};

std::string describe(const MergeInput& in) {
  return in.file + " (bank '" + in.bank.meta.name + "')";
}

std::string fingerprint_text(const BankMeta& m) {
  return m.model_fingerprint.empty() ? "none (a bank made without a model)" : m.model_fingerprint;
}

void check_compatible(const std::vector<MergeInput>& inputs) {
  KVT_CHECK(!inputs.empty(), "bank merge: no input bank given");
  const MergeInput& first = inputs.front();
  const BankMeta& a = first.bank.meta;
  std::map<std::string, std::string> seen;
  for (const MergeInput& in : inputs) {
    validate_bank(in.bank, in.file);
    std::error_code ec;
    auto canonical = std::filesystem::weakly_canonical(in.file, ec).string();
    if (ec) canonical = in.file;
    KVT_CHECK(seen.emplace(canonical, in.file).second, "bank merge: ", in.file,
              " is given twice (as ", seen[canonical], " and ", in.file,
              "): name each bank once (merging a bank with itself would double its usage)");
    const BankMeta& b = in.bank.meta;
    const std::string both = describe(first) + " and " + describe(in);
    const std::string fix =
        ": merge only banks trained for the same model and memory layer (export each with "
        "`kvtune bank export` from runs fine-tuned from one base model)";
    KVT_CHECK(a.key_dim == b.key_dim && a.value_dim == b.value_dim, "bank merge: ", both,
              " have different dims (key_dim ", a.key_dim, " vs ", b.key_dim, ", value_dim ",
              a.value_dim, " vs ", b.value_dim, ")", fix);
    KVT_CHECK(a.model_fingerprint == b.model_fingerprint, "bank merge: ", both,
              " were trained for different models (fingerprint ", fingerprint_text(a), " vs ",
              fingerprint_text(b), ")", fix);
    KVT_CHECK(a.memory_layer == b.memory_layer, "bank merge: ", both,
              " attach to different memory layers (", a.memory_layer, " vs ", b.memory_layer, ")",
              fix);
    const double sa = first.bank.effective_scale(), sb = in.bank.effective_scale();
    KVT_CHECK(std::abs(sa - sb) <= 1e-9 * std::max(sa, sb), "bank merge: ", both,
              " use different score scales (", sa, " vs ", sb,
              "): their scores would not be comparable in one bank", fix);
  }
}

// Canonical order: usage descending, key bits, value bits, origin. A function of content only.
bool canonical_less(const Row& x, const Row& y, int64_t key_dim, int64_t value_dim) {
  if (x.usage != y.usage) return x.usage > y.usage;
  if (int c = std::memcmp(x.key, y.key, sizeof(float) * key_dim)) return c < 0;
  if (int c = std::memcmp(x.value, y.value, sizeof(float) * value_dim)) return c < 0;
  return x.origin < y.origin;
}

}  // namespace

nlohmann::json to_json(const MergeReport& r) {
  return {{"sources", r.sources},
          {"slots_in", r.slots_in},
          {"slots_out", r.slots_out},
          {"merged_slots", r.merged_slots},
          {"duplicates_folded", r.duplicates_folded},
          {"usage_total", r.usage_total}};
}

Bank merge_banks(const std::vector<MergeInput>& inputs, const MergeOptions& options,
                 MergeReport* report) {
  check_compatible(inputs);
  KVT_CHECK(std::isfinite(options.dedup_cosine) && options.dedup_cosine <= 1.0,
            "bank merge: dedup cosine is ", options.dedup_cosine,
            ", expected a value <= 1 (0 or less: fold nothing)");
  torch::NoGradGuard no_grad;
  const BankMeta& meta0 = inputs.front().bank.meta;
  const int64_t key_dim = meta0.key_dim, value_dim = meta0.value_dim;

  // The source table, sorted: indexes into it do not depend on the order of the inputs.
  std::set<SourceBank> source_set;
  for (const MergeInput& in : inputs) {
    if (in.bank.origin.defined()) {
      source_set.insert(in.bank.origin.sources.begin(), in.bank.origin.sources.end());
    } else {
      source_set.insert({in.file, in.bank.meta.name});
    }
  }
  const std::vector<SourceBank> sources(source_set.begin(), source_set.end());
  const auto source_index = [&](const SourceBank& s) {
    return static_cast<int64_t>(std::lower_bound(sources.begin(), sources.end(), s) -
                                sources.begin());
  };

  std::vector<torch::Tensor> hold;  // contiguous copies the rows point into
  std::vector<Row> rows;
  for (const MergeInput& in : inputs) {
    const Bank& b = in.bank;
    const auto keys = b.keys.detach().contiguous(), values = b.values.detach().contiguous();
    const auto ids = b.slot_ids.contiguous(), usage = b.usage.contiguous();
    hold.insert(hold.end(), {keys, values, ids, usage});
    // Slot id -> its origin rows, in stored order.
    std::map<int64_t, std::vector<std::pair<int64_t, int64_t>>> origin_of;
    if (b.origin.defined()) {
      std::vector<int64_t> remap;
      for (const auto& s : b.origin.sources) remap.push_back(source_index(s));
      const auto* sid = b.origin.slot_id.contiguous().data_ptr<int64_t>();
      const auto* src = b.origin.source.contiguous().data_ptr<int64_t>();
      const auto* ssid = b.origin.source_slot_id.contiguous().data_ptr<int64_t>();
      for (int64_t r = 0; r < b.origin.rows(); ++r) {
        origin_of[sid[r]].emplace_back(remap[static_cast<size_t>(src[r])], ssid[r]);
      }
    }
    const int64_t self = b.origin.defined() ? -1 : source_index({in.file, b.meta.name});
    for (int64_t i = 0; i < b.size(); ++i) {
      Row row{keys.data_ptr<float>() + i * key_dim,
              values.data_ptr<float>() + i * value_dim,
              usage.data_ptr<int64_t>()[i],
              {}};
      const int64_t id = ids.data_ptr<int64_t>()[i];
      if (self >= 0) {
        row.origin = {{self, id}};
      } else {
        row.origin = std::move(origin_of[id]);
      }
      rows.push_back(std::move(row));
    }
  }

  // A source slot reaching the output twice (a bank merged with a merge that holds it) would
  // count its usage twice.
  std::set<std::pair<int64_t, int64_t>> seen_origin;
  for (const Row& r : rows) {
    for (const auto& o : r.origin) {
      KVT_CHECK(seen_origin.insert(o).second, "bank merge: slot ", o.second, " of ",
                sources[static_cast<size_t>(o.first)].file, " (bank '",
                sources[static_cast<size_t>(o.first)].name,
                "') reaches the merge twice (one input already holds it, e.g. an earlier merge "
                "of it): leave out one of the two inputs");
    }
  }

  std::sort(rows.begin(), rows.end(),
            [&](const Row& x, const Row& y) { return canonical_less(x, y, key_dim, value_dim); });
  const int64_t n = static_cast<int64_t>(rows.size());
  auto keys = torch::empty({n, key_dim}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(keys.data_ptr<float>() + i * key_dim, rows[i].key, sizeof(float) * key_dim);
  }

  // Greedy grouping in canonical order, blockwise: similarities of a block of rows to every
  // later row, at most ~16M floats at a time.
  std::vector<int64_t> leader(static_cast<size_t>(n), -1);
  const bool fold = options.dedup_cosine > 0.0;
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, n));
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block);
    torch::Tensor sim;
    if (fold) sim = keys.slice(0, start, end).matmul(keys.slice(0, start).t()).contiguous();
    for (int64_t i = start; i < end; ++i) {
      if (leader[i] >= 0) continue;
      leader[i] = i;
      if (!fold) continue;
      const float* s = sim.data_ptr<float>() + (i - start) * (n - start);
      for (int64_t j = i + 1; j < n; ++j) {
        if (leader[j] < 0 && s[j - start] > options.dedup_cosine) leader[j] = i;
      }
    }
  }

  std::vector<int64_t> leaders;
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (leader[i] == i) leaders.push_back(i);
    members[static_cast<size_t>(leader[i])].push_back(i);
  }
  const int64_t m = static_cast<int64_t>(leaders.size());
  Bank out;
  out.keys = torch::empty({m, key_dim}, torch::kFloat32);
  out.values = torch::empty({m, value_dim}, torch::kFloat32);
  out.slot_ids = torch::arange(m, torch::kInt64);
  out.usage = torch::empty({m}, torch::kInt64);
  std::vector<int64_t> o_slot, o_source, o_source_slot;
  MergeReport r;
  r.sources = static_cast<int64_t>(sources.size());
  r.slots_in = n;
  r.slots_out = m;
  r.duplicates_folded = n - m;
  for (int64_t g = 0; g < m; ++g) {
    const auto& group = members[static_cast<size_t>(leaders[g])];
    std::memcpy(out.keys.data_ptr<float>() + g * key_dim, rows[leaders[g]].key,
                sizeof(float) * key_dim);
    int64_t usage = 0;
    for (int64_t i : group) usage += rows[i].usage;
    std::vector<double> mean(static_cast<size_t>(value_dim), 0.0);
    for (int64_t i : group) {
      const double w = usage > 0 ? static_cast<double>(rows[i].usage) / usage
                                 : 1.0 / static_cast<double>(group.size());
      for (int64_t c = 0; c < value_dim; ++c) mean[c] += w * rows[i].value[c];
    }
    for (int64_t c = 0; c < value_dim; ++c) {
      out.values.data_ptr<float>()[g * value_dim + c] = static_cast<float>(mean[c]);
    }
    out.usage.data_ptr<int64_t>()[g] = usage;
    r.usage_total += usage;
    if (group.size() > 1) ++r.merged_slots;
    for (int64_t i : group) {
      for (const auto& [source, slot] : rows[i].origin) {
        o_slot.push_back(g);
        o_source.push_back(source);
        o_source_slot.push_back(slot);
      }
    }
  }
  out.origin.sources = sources;
  out.origin.slot_id = torch::tensor(o_slot, torch::kInt64);
  out.origin.source = torch::tensor(o_source, torch::kInt64);
  out.origin.source_slot_id = torch::tensor(o_source_slot, torch::kInt64);

  out.meta.name = options.name;
  out.meta.key_dim = key_dim;
  out.meta.value_dim = value_dim;
  // The inputs' common scale, written the same whatever their order.
  out.meta.score_scale = meta0.score_scale;
  for (const MergeInput& in : inputs) {
    if (in.bank.meta.score_scale != meta0.score_scale) {
      out.meta.score_scale = inputs.front().bank.effective_scale();
    }
  }
  out.meta.model_fingerprint = meta0.model_fingerprint;
  out.meta.memory_layer = meta0.memory_layer;
  nlohmann::json files = nlohmann::json::array();
  for (const auto& s : sources) files.push_back(s.file);
  out.meta.provenance =
      dump_json(nlohmann::json{{"merged_by", "kvtune bank merge"},
                               {"sources", files},
                               {"dedup_cosine", fold ? options.dedup_cosine : 0.0},
                               {"slots_in", n},
                               {"slots_out", m}});
  validate_bank(out, "bank merge result");
  if (report) *report = r;
  return out;
}

}  // namespace kvtune

// kvtune bank export | merge | compact: banks as standalone files, one bank from several, fewer
// slots (docs/banks.md).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "bank/bank_compact.h"
#include "bank/bank_io.h"
#include "bank/bank_merge.h"
#include "bank/bank_patch.h"
#include "bank/indexed_bank.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "common/path_checks.h"
#include "common/utf8.h"
#include "eval/bank_usage.h"
#include "train/run_model.h"

namespace kvtune::cli {
namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string model, out, which = "domain";
  int64_t layer = 0;
  std::vector<std::string> count_usage;
  int64_t batches = 20, batch_size = 16, seq_len = -1;
};

struct MergeArgs {
  std::vector<std::string> banks;
  std::string out, index = "Flat", name;
  double dedup_cosine = 0.995;
  bool no_dedup = false, json = false;
};

struct CompactArgs {
  std::string bank, out, index;
  CompactOptions options;
  bool json = false;
};

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * fraction);
  return buf;
}

// The bank and its index beside it, each written atomically (bank first).
void save_with_index(Bank bank, const std::string& factory, const std::string& out) {
  IndexConfig config;
  config.factory = factory;
  IndexedBank(std::move(bank), config).save(out);
}

// A patch is written without an index: an index left beside the output by an earlier bank of
// that name belongs to no file any more.
void remove_stale_index(const std::string& out) {
  std::error_code ec;
  fs::remove(index_path_for(out), ec);
}

// A sparse run's patch (patch_<layer>.h5) as a standalone file: no index (it is applied to the
// base bank's rows, searched by the base bank's index).
void export_patch(const ExportArgs& a) {
  const auto path = (fs::path(a.model) / patch_bank_file(a.layer)).string();
  KVT_CHECK(path_exists(path), a.model, " has no ", patch_bank_file(a.layer),
            ": it is not the model of a run fine-tuned with method sparse (--which domain for "
            "method memory, base for the model's own bank)");
  const Bank patch = read_bank(path);
  auto loaded = load_model(a.model);
  check_bank_fits_model(loaded.model, patch.meta, path);
  KVT_CHECK(patch.meta.kind == kBankKindPatch && patch.meta.memory_layer == a.layer, path,
            ": not the patch of memory layer ", a.layer, ": the file was renamed or copied");
  FileLock lock(a.out);
  write_bank(a.out, patch);
  remove_stale_index(a.out);
  std::cout << "wrote " << a.out << " (patch '" << patch.meta.name << "', " << patch.size()
            << " changed slots of the base bank of memory layer " << patch.meta.memory_layer
            << ", model " << patch.meta.model_fingerprint << ")\n";
}

void run_export(const ExportArgs& a) {
  // The output must not replace a file of the model folder (its banks, their indexes).
  std::error_code ec;
  if (fs::is_directory(a.model, ec)) {
    std::vector<std::string> inputs;
    for (const auto& e : fs::directory_iterator(a.model, ec)) inputs.push_back(e.path().string());
    refuse_output_equal_to_input(a.out, inputs);
    refuse_output_equal_to_input(index_path_for(a.out), inputs, "the index of --out");
  }
  if (a.which == "patch") return export_patch(a);
  auto loaded = load_model(a.model);
  bool stamped = false;
  auto bank = load_run_bank(loaded, a.model, a.layer, a.which, &stamped);
  if (!a.count_usage.empty()) {
    // The model as fine-tuned: every domain bank of the run attached after its base bank.
    if (a.which == "domain") {
      auto layers = loaded.model->memory_layers();
      for (int64_t i = 0; i < static_cast<int64_t>(layers.size()); ++i) {
        if (i == a.layer) {
          layers[i]->attach(bank);
        } else if (path_exists(fs::path(a.model) / domain_bank_file(i))) {
          layers[i]->attach(load_run_bank(loaded, a.model, i, "domain"));
        }
      }
    }
    bank->mutable_bank().usage.zero_();
    UsageCountRequest request;
    if (const auto recipe = run_recipe(a.model)) request.data = recipe->data;
    if (a.seq_len > 0) request.data.seq_len = a.seq_len;
    request.sets = a.count_usage;
    request.batches = a.batches;
    request.batch_size = a.batch_size;
    const auto count = count_bank_usage(loaded.model, *loaded.tokenizer, request);
    std::cout << "counted usage over " << count.sequences << " sequences (" << count.tokens
              << " tokens) of the training side of";
    for (const auto& s : a.count_usage) std::cout << " " << s;
    std::cout << ": " << bank->bank().usage.sum().item<int64_t>() << " retrievals\n";
  }
  if (stamped) {
    std::cout << "note: " << domain_bank_file(a.layer)
              << " recorded no model fingerprint (written before kvtune recorded them); the "
                 "export carries the model folder's\n";
  }
  FileLock lock(a.out);
  bank->save(a.out);
  const auto& meta = bank->bank().meta;
  std::cout << "wrote " << a.out << " (" << a.which << " bank '" << meta.name << "', "
            << bank->size() << " slots, memory layer " << meta.memory_layer << ", model "
            << meta.model_fingerprint << ") and " << index_path_for(a.out) << " ("
            << meta.index_factory << ")\n";
}

// Patches of one base bank merged into one patch (bank/bank_patch.h: a slot that several
// changed takes the mean of their rows).
void merge_patch_files(const MergeArgs& a, std::vector<MergeInput> inputs) {
  std::vector<std::pair<std::string, Bank>> patches;
  for (auto& in : inputs) patches.emplace_back(in.file, std::move(in.bank));
  PatchMergeReport report;
  const Bank merged =
      merge_patches(patches, a.name.empty() ? fs::path(a.out).stem().string() : a.name, &report);
  write_bank(a.out, merged);
  remove_stale_index(a.out);
  if (a.json) {
    auto j = to_json(report);
    j["out"] = a.out;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "merged " << report.patches << " patches into " << report.slots_out
            << " changed slots (" << report.conflicting_slots
            << " changed by several: mean of their rows)\nwrote " << a.out << "\n";
}

void run_merge(const MergeArgs& a) {
  std::vector<std::string> paths;
  for (const auto& path : a.banks) {
    paths.push_back(path);
    paths.push_back(index_path_for(path));
  }
  refuse_output_equal_to_input(a.out, paths);
  refuse_output_equal_to_input(index_path_for(a.out), paths, "the index of --out");
  FileLock lock(a.out);
  std::vector<MergeInput> inputs;
  for (const auto& path : a.banks) inputs.push_back({path, read_bank(path)});
  size_t patches = 0;
  for (const auto& in : inputs) patches += in.bank.meta.kind == kBankKindPatch ? 1 : 0;
  KVT_CHECK(patches == 0 || patches == inputs.size(), "merge: ", patches, " of the ", inputs.size(),
            " inputs are patches (method sparse) and the others banks: merge "
            "patches with patches and banks with banks");
  if (patches > 0) return merge_patch_files(a, std::move(inputs));
  MergeOptions options;
  options.dedup_cosine = a.no_dedup ? 0.0 : a.dedup_cosine;
  options.name = a.name.empty() ? fs::path(a.out).stem().string() : a.name;
  MergeReport report;
  Bank merged = merge_banks(inputs, options, &report);
  save_with_index(std::move(merged), a.index, a.out);
  if (a.json) {
    auto j = to_json(report);
    j["out"] = a.out;
    j["index"] = index_path_for(a.out);
    j["dedup_cosine"] = options.dedup_cosine;
    std::cout << dump_json(j, 2) << "\n";
    return;
  }
  std::cout << "merged " << inputs.size() << " banks (" << report.slots_in << " slots) into "
            << report.slots_out << " slots";
  if (options.dedup_cosine > 0) {
    std::cout << ": " << report.duplicates_folded << " near-duplicates (cosine > "
              << options.dedup_cosine << ") folded, " << report.merged_slots
              << " slots hold more than one source slot";
  }
  std::cout << "\nwrote " << a.out << " and " << index_path_for(a.out) << " (" << a.index << ")\n";
}

void run_compact(const CompactArgs& a) {
  validate_compact_options(a.options);  // before any file is read
  refuse_output_equal_to_input(a.out, {a.bank, index_path_for(a.bank)});
  refuse_output_equal_to_input(index_path_for(a.out), {a.bank, index_path_for(a.bank)},
                               "the index of --out");
  FileLock lock(a.out);
  const Bank bank = read_bank(a.bank);
  CompactReport r;
  Bank out = compact_bank(bank, a.options, &r);
  std::string factory = a.index;
  if (factory.empty()) factory = bank.meta.index_factory;
  if (factory.empty() || factory.rfind("(loaded", 0) == 0) factory = "Flat";
  save_with_index(std::move(out), factory, a.out);
  if (a.json) {
    auto j = to_json(r);
    j["bank"] = a.bank;
    j["out"] = a.out;
    j["index"] = index_path_for(a.out);
    std::cout << dump_json(j, 2) << "\n";
    return;
  }
  std::cout << "compacted " << a.bank << " by " << r.by << " (" << r.rule << " " << r.threshold
            << (a.options.one_pass ? ", one pass" : "") << "): kept " << r.slots_after << " of "
            << r.slots_before << " slots, dropped " << r.dropped << " ("
            << percent(static_cast<double>(r.dropped) / r.slots_before) << ")\n"
            << "usage dropped: " << r.usage_dropped << " of " << r.usage_total << " retrievals ("
            << percent(r.usage_share_dropped) << ")\n";
  if (r.by == "leverage") {
    std::cout << "leverage: rank " << r.rank << ", score mass dropped " << r.leverage_dropped
              << " of " << r.rank << ", smallest kept score " << r.min_kept_score << "\n";
    if (r.candidate_limit > 0) {
      std::cout << "one pass: at most " << r.peak_candidates
                << " candidates held (limit 2d/eps = " << r.candidate_limit << "), " << r.prunes
                << " prunes\n";
    }
  }
  std::cout << "wrote " << a.out << " and " << index_path_for(a.out) << " (" << factory << ")\n";
}

void add_export(CLI::App& bank) {
  auto a = std::make_shared<ExportArgs>();
  auto* c = bank.add_subcommand(
      "export", "Write a run's domain bank (or its base bank) as a standalone bank file");
  c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
  c->add_option("--out", a->out, "Output bank file (.h5); the index goes beside it (.faiss)")
      ->required();
  c->add_option("--layer", a->layer, "Memory layer")->check(CLI::NonNegativeNumber);
  c->add_option("--which", a->which,
                "domain (method memory's bank, default), patch (method sparse's changed base "
                "slots) or base")
      ->check(CLI::IsMember({"domain", "patch", "base"}));
  c->add_option("--count-usage", a->count_usage,
                "Replace the usage counts by the retrievals the model makes reading the training "
                "side of this set (corpus name or path; repeatable)");
  c->add_option("--batches", a->batches, "Usage counting: batches per set (0: all)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--batch-size", a->batch_size, "Usage counting: sequences per batch")
      ->check(CLI::PositiveNumber);
  c->add_option("--seq-len", a->seq_len,
                "Usage counting: tokens per sequence (default: the run's recipe, else 128)")
      ->check(CLI::PositiveNumber);
  c->callback([a] { run_export(*a); });
}

void add_merge(CLI::App& bank) {
  auto a = std::make_shared<MergeArgs>();
  auto* c = bank.add_subcommand(
      "merge", "One bank from several: new slot ids, near-duplicates folded, origins kept");
  c->add_option("banks", a->banks, "Bank files to merge")->required();
  c->add_option("--out", a->out, "Output bank file (.h5); the index goes beside it (.faiss)")
      ->required();
  auto* dedup = c->add_option("--dedup-cosine", a->dedup_cosine,
                              "Fold slots whose keys have cosine above this (default 0.995)")
                    ->check(CLI::Range(0.0, 1.0));
  c->add_flag("--no-dedup", a->no_dedup, "Keep every slot")->excludes(dedup);
  c->add_option("--index", a->index, "faiss factory string of the output's index (default Flat)");
  c->add_option("--name", a->name, "Bank name (default: the output's file stem)");
  c->add_flag("--json", a->json, "Print the report as JSON");
  c->callback([a] { run_merge(*a); });
}

void add_compact(CLI::App& bank) {
  auto a = std::make_shared<CompactArgs>();
  auto* c = bank.add_subcommand(
      "compact", "Keep the most used slots, or the leverage-score universal set of the keys");
  c->add_option("bank", a->bank, "Bank file")->required();
  c->add_option("--out", a->out, "Output bank file (.h5); the index goes beside it (.faiss)")
      ->required();
  auto* keep = c->add_option("--keep", a->options.keep_fraction,
                             "Keep this fraction of the slots, the top ones by --by");
  c->add_option("--eps", a->options.eps,
                "Keep slots whose usage share (--by usage) or leverage score (--by leverage) is "
                ">= eps")
      ->excludes(keep);
  c->add_option("--by", a->options.by, "usage or leverage")
      ->required()
      ->check(CLI::IsMember({"usage", "leverage"}));
  c->add_flag("--one-pass", a->options.one_pass,
              "Leverage with --eps: one streaming pass over the keys (same result)");
  c->add_option("--index", a->index,
                "faiss factory string of the output's index (default: the input's, else Flat)");
  c->add_flag("--json", a->json, "Print the report as JSON");
  c->callback([a] { run_compact(*a); });
}

}  // namespace

void add_bank_tool_commands(CLI::App& bank) {
  add_export(bank);
  add_merge(bank);
  add_compact(bank);
}

}  // namespace kvtune::cli

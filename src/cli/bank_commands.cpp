// kvtune bank create | inspect | query (export, merge, compact: bank_tool_commands.cpp)
#include <filesystem>
#include <iostream>

#include "attention/estimator.h"
#include "bank/bank_io.h"
#include "bank/bank_query.h"
#include "bank/bank_stats.h"
#include "bank/indexed_bank.h"
#include "bank/tensor_file.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "common/path_checks.h"
#include "common/resources.h"
#include "common/utf8.h"

namespace kvtune::cli {
namespace {

struct CreateArgs {
  int64_t n = 0, key_dim = 0, value_dim = 0;
  uint64_t seed = 0;
  std::string out, index = "Flat", name;
  bool trainable = false, force = false;
  double value_std = 0.02;
};

struct QueryArgs {
  std::vector<std::string> banks;
  std::string queries, out, estimator = "topk";
  int64_t k = 32;
  int nprobe = 0, ef_search = 0;
  double scale = 0;
  int64_t samples = -1;  // -1: the estimator's default
  int64_t groups = 0;    // 0: the default
  uint64_t seed = 0;
};

void add_create(CLI::App& bank) {
  auto a = std::make_shared<CreateArgs>();
  auto* c = bank.add_subcommand("create", "Create a bank of random unit keys and small values");
  c->add_option("--n", a->n, "Number of slots")->required()->check(CLI::PositiveNumber);
  c->add_option("--key-dim", a->key_dim, "Key dimension")->required()->check(CLI::PositiveNumber);
  c->add_option("--value-dim", a->value_dim, "Value dimension")
      ->required()
      ->check(CLI::PositiveNumber);
  c->add_option("--out", a->out, "Output bank file (.h5); the index goes beside it (.faiss)")
      ->required();
  c->add_option("--seed", a->seed, "Random seed");
  c->add_option("--index", a->index, "faiss factory string (Flat, IVF256,Flat, HNSW32, ...)");
  c->add_option("--name", a->name, "Bank name (default: file stem)");
  c->add_option("--value-std", a->value_std, "Standard deviation of the random values")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--trainable", a->trainable, "Mark the bank trainable");
  c->add_flag("--force", a->force, "Replace --out when it exists");
  c->callback([a] {
    const std::string name =
        a->name.empty() ? std::filesystem::path(a->out).stem().string() : a->name;
    // Sizes before anything is allocated: keys and values, twice (drawn, then normalized), plus
    // ids and usage; an approximate index copies the keys once more.
    const int64_t width = a->key_dim > (int64_t{1} << 40) || a->value_dim > (int64_t{1} << 40)
                              ? -1
                              : a->key_dim + a->value_dim;
    check_fits_in_memory(width < 0 ? -1 : checked_mul(a->n, 8 * width + 16),
                         "bank create --n " + std::to_string(a->n) + " --key-dim " +
                             std::to_string(a->key_dim) + " --value-dim " +
                             std::to_string(a->value_dim),
                         "give a smaller --n, --key-dim or --value-dim");
    FileLock lock(a->out);
    KVT_CHECK(a->force || !path_exists(a->out), "--out ", a->out,
              " exists: give --force to replace it, or another file name");
    IndexConfig config;
    config.factory = a->index;
    IndexedBank bank(
        make_random_bank(name, a->n, a->key_dim, a->value_dim, a->seed, a->trainable, a->value_std),
        config);
    bank.mutable_bank().meta.provenance =
        "{\"created_by\": \"kvtune bank create\", \"seed\": " + std::to_string(a->seed) + "}";
    bank.save(a->out);
    std::cout << "wrote " << a->out << " (" << a->n << " slots) and " << index_path_for(a->out)
              << " (" << a->index << ")\n";
  });
}

void add_inspect(CLI::App& bank) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* c = bank.add_subcommand("inspect",
                                "Size, dims, key norms, value statistics, usage analytics (Gini, "
                                "KL to uniform, top-1% share)");
  c->add_option("file", *path, "Bank file")->required();
  c->add_flag("--json", *json, "Print JSON");
  c->callback([path, json] {
    const auto stats = compute_bank_stats(read_bank(*path));
    if (*json) {
      std::cout << dump_json(to_json(stats), 2) << "\n";
    } else {
      std::cout << to_text(stats);
    }
  });
}

void add_query(CLI::App& bank) {
  auto a = std::make_shared<QueryArgs>();
  auto* c = bank.add_subcommand(
      "query", "Retrieve from banks: reads /queries [M, d_k], writes /ids, /scores, /outputs");
  c->add_option("banks", a->banks, "Bank files, searched together in this order")->required();
  c->add_option("--queries", a->queries, "HDF5 file with dataset /queries [M, d_k]")->required();
  c->add_option("--out", a->out, "Output HDF5 file")->required();
  c->add_option("--k", a->k, "Neighbours per query")->check(CLI::PositiveNumber);
  c->add_option("--estimator", a->estimator, "topk | dense | gumbel | topk+tail");
  c->add_option("--samples", a->samples,
                "gumbel: draws per query (default 128); topk+tail: uniform tail keys per query "
                "(default 64)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--groups", a->groups, "gumbel: median-of-means groups (default 4)")
      ->check(CLI::PositiveNumber);
  c->add_option("--seed", a->seed, "gumbel, topk+tail: random seed (same seed, same output)");
  c->add_option("--nprobe", a->nprobe, "IVF lists to visit")->check(CLI::NonNegativeNumber);
  c->add_option("--ef-search", a->ef_search, "HNSW search breadth")->check(CLI::NonNegativeNumber);
  c->add_option("--scale", a->scale, "Score scale (default: the banks' own)")
      ->check(CLI::NonNegativeNumber);
  c->callback([a] {
    make_estimator(a->estimator);  // an unknown name fails before any file is read
    // The output must not replace an input: a bank, its index, or the queries.
    std::vector<std::string> inputs{a->queries};
    for (const auto& b : a->banks) {
      inputs.push_back(b);
      inputs.push_back(index_path_for(b));
    }
    refuse_output_equal_to_input(a->out, inputs);
    KVT_CHECK(!is_bank_file(a->out), "--out ", a->out,
              " is a bank file: the query output would replace it; give another file name");
    IndexConfig params;
    params.nprobe = a->nprobe;
    params.ef_search = a->ef_search;
    std::vector<std::shared_ptr<IndexedBank>> banks;
    for (const auto& path : a->banks) banks.push_back(IndexedBank::load(path, params));
    const auto queries = read_tensor(a->queries, "queries");
    KnnAttentionOptions options;
    options.k = a->k;
    options.estimator = a->estimator;
    options.scale = a->scale;
    options.seed = a->seed;
    if (a->samples >= 0) {
      options.samples = a->samples;
      options.tail_samples = a->samples;
    }
    if (a->groups > 0) options.groups = a->groups;
    const auto r = query_banks(banks, queries, options);
    write_tensors(a->out, {{"ids", r.ids}, {"scores", r.scores}, {"outputs", r.output}});
    std::cout << "wrote " << a->out << ": " << queries.size(0) << " queries, k = " << a->k << "\n";
  });
}

}  // namespace

void add_bank_commands(CLI::App& app) {
  auto* bank =
      app.add_subcommand("bank", "Create, inspect, query, export, merge and compact memory banks");
  bank->require_subcommand(1);
  add_create(*bank);
  add_inspect(*bank);
  add_query(*bank);
  add_bank_tool_commands(*bank);
}

}  // namespace kvtune::cli

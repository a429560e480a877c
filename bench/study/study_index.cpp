// Study part 4: recall and search cost of index configs on large banks. For each key
// distribution, each config (a faiss factory string with its search breadth) is built over the
// same n unit keys and searched for the same queries; recall@k is the share of the exact top-k
// (a Flat search) that it returns. Times are one run's wall seconds on this machine.
#include <chrono>
#include <cstdio>
#include <map>
#include <unordered_set>

#include "common/threads.h"
#include "index/key_index.h"
#include "study.h"

namespace kvtune::study {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

torch::Tensor search_ids(const KeyIndex& index, const torch::Tensor& queries, int64_t k,
                         double* seconds) {
  const int64_t nq = queries.size(0);
  auto scores = torch::empty({nq, k});
  auto ids = torch::empty({nq, k}, torch::kInt64);
  const auto t0 = std::chrono::steady_clock::now();
  index.search(queries.data_ptr<float>(), nq, k, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
  *seconds = seconds_since(t0);
  return ids;
}

double recall(const torch::Tensor& found, const torch::Tensor& exact) {
  const int64_t nq = exact.size(0), k = exact.size(1);
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t* e = exact.data_ptr<int64_t>() + i * k;
    const int64_t* f = found.data_ptr<int64_t>() + i * k;
    const std::unordered_set<int64_t> truth(e, e + k);
    for (int64_t j = 0; j < k; ++j) hits += truth.count(f[j]);
  }
  return static_cast<double>(hits) / static_cast<double>(nq * k);
}

}  // namespace

nlohmann::json run_index_study(const IndexStudyOptions& o) {
  set_num_threads(o.threads);
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& kind : o.key_kinds) {
    SyntheticSpec spec;
    spec.keys = kind;
    spec.n = o.n;
    spec.dk = o.dk;
    spec.dv = 1;
    spec.queries = o.queries;
    spec.centres = o.centres;
    spec.seed = o.seed;
    const auto bank = make_synthetic(spec);
    KeyIndex flat(o.dk, IndexConfig{});
    flat.build(bank.keys.data_ptr<float>(), o.n);
    std::map<int64_t, torch::Tensor> exact;  // by k: every config is compared with these
    for (const int64_t k : o.ks) {
      double exact_s = 0;
      exact[k] = search_ids(flat, bank.queries, k, &exact_s);
      rows.push_back({{"keys", kind},
                      {"factory", "Flat"},
                      {"k", k},
                      {"recall", 1.0},
                      {"search_ms_per_query", 1e3 * exact_s / o.queries}});
      std::printf("index: %s keys, k %lld, Flat: %.3f ms per query\n", kind.c_str(),
                  static_cast<long long>(k), 1e3 * exact_s / o.queries);
    }
    for (const auto& base : o.configs) {
      IndexConfig config = base;
      config.nprobe = 0;
      KeyIndex index(o.dk, config);
      const auto t0 = std::chrono::steady_clock::now();
      index.build(bank.keys.data_ptr<float>(), o.n);
      const double build_s = seconds_since(t0);
      const int64_t index_bytes = index.memory_bytes();
      index.save(o.scratch);
      const auto breadths = o.nprobes.empty() ? std::vector<int>{base.nprobe} : o.nprobes;
      for (const int nprobe : breadths) {
        // The breadth is set on the index read back from its file, as `bank query --nprobe`
        // sets it on a saved bank's index.
        config.nprobe = nprobe;
        const KeyIndex searcher =
            KeyIndex::load(o.scratch, bank.keys.data_ptr<float>(), o.n, o.dk, config);
        for (const int64_t k : o.ks) {
          double s = 0;
          const auto found = search_ids(searcher, bank.queries, k, &s);
          const double r = recall(found, exact.at(k));
          rows.push_back({{"keys", kind},
                          {"factory", config.factory},
                          {"nprobe", nprobe},
                          {"k", k},
                          {"recall", r},
                          {"search_ms_per_query", 1e3 * s / o.queries},
                          {"build_seconds", build_s},
                          {"index_bytes", index_bytes}});
          std::printf(
              "index: %s keys, k %lld, %s nprobe %d: recall %.3f, %.3f ms per query "
              "(built in %.1f s)\n",
              kind.c_str(), static_cast<long long>(k), config.factory.c_str(), nprobe, r,
              1e3 * s / o.queries, build_s);
          std::fflush(stdout);
        }
      }
    }
  }
  std::remove(o.scratch.c_str());
  return {{"part", "index"},      {"n", o.n},    {"dk", o.dk}, {"queries", o.queries},
          {"centres", o.centres}, {"rows", rows}};
}

}  // namespace kvtune::study

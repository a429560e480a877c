// Study part 2: what lazy Gumbel costs per query against n, with k = round(sqrt n): keys scored
// by the sampler (counted from LazyGumbelDraw::tail_scored) and wall times next to dense: the
// one-row sampler (LazyGumbelSampler), the blocked one of the gumbel estimator, and per key scored.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>

#include "attention/impl/bank_rows.h"
#include "attention/impl/gumbel_block.h"
#include "attention/knn_attention.h"
#include "attention/lazy_gumbel.h"
#include "common/threads.h"
#include "index/key_index.h"
#include "study.h"

namespace kvtune::study {
namespace {

// Minimum wall seconds of `fn` over `repeats` calls.
double min_seconds(int64_t repeats, const std::function<void()>& fn) {
  double best = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

struct SamplerCounts {
  double tail_per_draw = 0;    // mean m over all draws of all queries
  double above_threshold = 0;  // keys outside S scored above s_min (0 with an exact index)
};

// Each query: its top-k from the index, re-scored in double, then `samples` lazy Gumbel draws,
// one thread. The scored-key counts come from the sampler itself.
SamplerCounts run_sampler(const SyntheticBank& bank, const std::vector<BankView>& banks,
                          const torch::Tensor& top_ids, double scale, int64_t samples,
                          uint64_t seed) {
  const int64_t Q = bank.queries.size(0), k = top_ids.size(1), n = bank.keys.size(0);
  int64_t tail = 0, above = 0;
  std::vector<double> top_scores(static_cast<size_t>(k));
  for (int64_t r = 0; r < Q; ++r) {
    const auto score = make_bank_scorer(banks, bank.queries[r], scale);
    const int64_t* ids = top_ids.data_ptr<int64_t>() + r * k;
    score(ids, k, top_scores.data());
    LazyGumbelSampler sampler(ids, top_scores.data(), k, n, score);
    SamplerRng rng(stream_seed(seed, static_cast<uint64_t>(r)));
    for (int64_t i = 0; i < samples; ++i) tail += sampler.draw(rng).tail_scored;
    above += sampler.above_threshold();
  }
  const double draws = static_cast<double>(Q * samples);
  return {static_cast<double>(tail) / draws, static_cast<double>(above) / draws};
}

// The same draws by the gumbel estimator's own sampler (attention/impl/gumbel_block.h): all
// queries in blocks of rows, the top-k re-scored first. Returns the keys it scored, the top-k's
// included (a row that falls back to dense scores all n).
double run_block_sampler(const SyntheticBank& bank, const std::vector<BankView>& banks,
                         const torch::Tensor& top_ids, double scale, int64_t samples,
                         uint64_t seed) {
  const int64_t Q = bank.queries.size(0), k = top_ids.size(1), dk = bank.queries.size(1);
  const impl::BankRows rows(banks);
  const auto q64 = bank.queries.to(torch::kFloat64).contiguous();
  const double* q = q64.data_ptr<double>();
  const int64_t* ids = top_ids.data_ptr<int64_t>();
  std::vector<double> top_scores(static_cast<size_t>(Q * k));
  rows.score_rows(q, Q, ids, k, scale, top_scores.data());
  std::vector<int64_t> out(static_cast<size_t>(Q * samples));
  impl::GumbelDrawStats stats;
  impl::lazy_gumbel_draws(rows, q, ids, top_scores.data(), Q, k, samples, scale, seed, out.data(),
                          &stats);
  return static_cast<double>(Q * k + stats.tail_keys + stats.dense_rows * rows.total());
}

}  // namespace

nlohmann::json run_cost_study(const CostStudyOptions& o) {
  torch::NoGradGuard no_grad;
  set_num_threads(o.threads);
  const double scale = std::sqrt(static_cast<double>(o.dk));
  nlohmann::json runs = nlohmann::json::array(), slopes = nlohmann::json::object();
  for (size_t kind_i = 0; kind_i < o.key_kinds.size(); ++kind_i) {
    const auto& kind = o.key_kinds[kind_i];
    const bool timed = kind_i == 0;
    std::map<std::string, std::vector<double>> series;
    std::vector<double> xs;
    for (int64_t n : o.ns) {
      SyntheticSpec spec;
      spec.keys = kind;
      spec.n = n;
      spec.dk = spec.dv = o.dk;
      spec.queries = o.queries;
      spec.seed = o.seed;
      const auto bank = make_synthetic(spec);
      KeyIndex index(o.dk, IndexConfig{});
      index.build(bank.keys.data_ptr<float>(), n);
      const std::vector<BankView> banks = {{bank.keys, bank.values, &index, "study"}};
      const int64_t Q = o.queries;
      const int64_t k = std::max<int64_t>(1, std::llround(std::sqrt(static_cast<double>(n))));

      auto top_scores = torch::empty({Q, k}, torch::kFloat32);
      auto top_ids = torch::empty({Q, k}, torch::kInt64);
      auto search = [&] {
        index.search(bank.queries.data_ptr<float>(), Q, k, top_scores.data_ptr<float>(),
                     top_ids.data_ptr<int64_t>());
      };
      search();
      SamplerCounts counts;
      auto sample = [&] { counts = run_sampler(bank, banks, top_ids, scale, o.samples, o.seed); };
      const double sampler_s = min_seconds(timed ? o.repeats : 1, sample);
      const double per_draw = static_cast<double>(k) + counts.tail_per_draw;
      nlohmann::json run = {
          {"keys", kind},
          {"n", n},
          {"k", k},
          {"scale", scale},
          {"samples", o.samples},
          {"tail_scored_per_draw", counts.tail_per_draw},
          {"scored_per_draw", per_draw},
          {"scored_per_query", static_cast<double>(k) + o.samples * counts.tail_per_draw},
          {"tail_bound_per_draw", static_cast<double>(n - k) / static_cast<double>(k + 1)},
          {"above_threshold_per_draw", counts.above_threshold}};
      xs.push_back(static_cast<double>(n));
      series["scored_per_draw"].push_back(per_draw);
      series["tail_scored_per_draw"].push_back(counts.tail_per_draw);
      std::printf("cost %-9s n=%-8lld k=%-5lld scored per draw %.1f (tail %.1f, bound %.1f)",
                  kind.c_str(), static_cast<long long>(n), static_cast<long long>(k), per_draw,
                  counts.tail_per_draw, static_cast<double>(n - k) / (k + 1));
      if (timed) {
        KnnAttentionOptions a;
        a.scale = scale;
        a.seed = o.seed;
        a.k = 1;  // "dense" also returns a top-k for inspection: keep that part minimal
        a.estimator = "dense";
        const double dense_s =
            min_seconds(o.repeats, [&] { knn_attention(bank.queries, banks, a); });
        const double search_s = min_seconds(o.repeats, search);
        a.k = k;
        a.estimator = "topk";
        const double topk_s =
            min_seconds(o.repeats, [&] { knn_attention(bank.queries, banks, a); });
        a.estimator = "gumbel";
        a.samples = o.samples;
        const double gumbel_s =
            min_seconds(o.repeats, [&] { knn_attention(bank.queries, banks, a); });
        double block_keys = 0;
        const double blocks_s = min_seconds(o.repeats, [&] {
          block_keys = run_block_sampler(bank, banks, top_ids, scale, o.samples, o.seed);
        });
        const double ms = 1e3 / static_cast<double>(Q);
        // Per key scored: the samplers' time over the keys they scored, dense's over Q * n.
        const double dense_us_per_key = dense_s * 1e6 / static_cast<double>(Q * n);
        const double sampler_keys =
            static_cast<double>(Q) * (static_cast<double>(k) + o.samples * counts.tail_per_draw);
        run["us_per_key"] = {{"dense", dense_us_per_key},
                             {"sampler", sampler_s * 1e6 / sampler_keys},
                             {"blocks", blocks_s * 1e6 / block_keys}};
        run["blocks_keys_per_query"] = block_keys / static_cast<double>(Q);
        run["ms_per_query"] = {{"dense", dense_s * ms},   {"flat_search", search_s * ms},
                               {"topk", topk_s * ms},     {"sampler", sampler_s * ms},
                               {"blocks", blocks_s * ms}, {"gumbel", gumbel_s * ms}};
        run["us_per_draw"] = sampler_s * 1e6 / static_cast<double>(Q * o.samples);
        for (const auto& [name, v] : run["ms_per_query"].items())
          series["ms_" + name].push_back(v.get<double>());
        std::printf(
            "  ms/query: dense %.3f, search %.3f, topk %.3f, sampler %.3f, blocks %.3f, gumbel "
            "%.3f; us/key: dense %.4f, sampler %.4f, blocks %.4f",
            dense_s * ms, search_s * ms, topk_s * ms, sampler_s * ms, blocks_s * ms, gumbel_s * ms,
            dense_us_per_key, run["us_per_key"]["sampler"].get<double>(),
            run["us_per_key"]["blocks"].get<double>());
      }
      std::printf("\n");
      std::fflush(stdout);
      runs.push_back(run);
    }
    nlohmann::json s = nlohmann::json::object();
    for (const auto& [name, v] : series) s[name] = loglog_slope(xs, v);
    slopes[kind] = s;
    std::printf("cost %-9s log-log slopes against n:", kind.c_str());
    for (const auto& [name, v] : s.items()) std::printf(" %s %.3f", name.c_str(), v.get<double>());
    std::printf("\n");
  }
  return {{"params",
           {{"ns", o.ns},
            {"key_kinds", o.key_kinds},
            {"dk", o.dk},
            {"dv", o.dk},
            {"scale", scale},
            {"queries", o.queries},
            {"samples", o.samples},
            {"gumbel_groups", KnnAttentionOptions{}.groups},
            {"repeats", o.repeats},
            {"threads", o.threads},
            {"seed", o.seed}}},
          {"runs", runs},
          {"slopes", slopes}};
}

}  // namespace kvtune::study

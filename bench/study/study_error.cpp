// Study part 1: output error of "topk", "topk+tail" and "gumbel" against "dense".
#include <chrono>
#include <cmath>
#include <cstdio>

#include "attention/knn_attention.h"
#include "index/key_index.h"
#include "study.h"

namespace kvtune::study {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

nlohmann::json run_error_study(const ErrorStudyOptions& o) {
  torch::NoGradGuard no_grad;
  nlohmann::json runs = nlohmann::json::array(), skipped = nlohmann::json::array();
  for (const auto& kind : o.key_kinds) {
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
      const std::vector<BankView> banks32 = {{bank.keys, bank.values, &index, "study"}};
      const auto keys64 = bank.keys.to(torch::kFloat64);
      const auto values64 = bank.values.to(torch::kFloat64);
      const auto q64 = bank.queries.to(torch::kFloat64);
      const std::vector<BankView> banks64 = {{keys64, values64, nullptr, "study64"}};
      const double value_rms = std::sqrt(values64.pow(2).sum(1).mean().item<double>());
      const auto ks = k_grid(o.fixed_ks, n);

      for (double scale_opt : o.scales) {
        const double scale = scale_opt > 0 ? scale_opt : std::sqrt(static_cast<double>(o.dk));
        const std::string scale_name = scale_opt > 0 ? "fixed" : "sqrt(d_k)";
        KnnAttentionOptions dense;
        dense.estimator = "dense";
        dense.scale = scale;
        const auto reference = knn_attention(q64, banks64, dense).output;
        const auto mass = topk_mass(scale * q64.matmul(keys64.t()), ks);

        for (size_t ki = 0; ki < ks.size(); ++ki) {
          const int64_t k = ks[ki];
          const double mean_mass = mass.select(1, ki).mean().item<double>();
          auto record = [&](const std::string& est, int64_t samples, const KnnAttentionOptions& a) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto out = knn_attention(bank.queries, banks32, a).output;
            const double secs = seconds_since(t0);
            const auto e = row_errors(out, reference, value_rms);
            runs.push_back({{"keys", kind},
                            {"n", n},
                            {"scale", scale},
                            {"scale_name", scale_name},
                            {"k", k},
                            {"topk_mass", mean_mass},
                            {"estimator", est},
                            {"samples", samples},
                            {"rel_error", e.relative},
                            {"rel_error_median", e.relative_median},
                            {"per_value_error", e.per_value},
                            {"seconds", secs}});
            std::printf(
                "error %-9s n=%-7lld scale=%-6.2f k=%-5lld %-9s s=%-5lld  rel %.4f  "
                "(per value %.4f, top-k mass %.3f)\n",
                kind.c_str(), static_cast<long long>(n), scale, static_cast<long long>(k),
                est.c_str(), static_cast<long long>(samples), e.relative, e.per_value, mean_mass);
            std::fflush(stdout);
          };
          KnnAttentionOptions a;
          a.k = k;
          a.scale = scale;
          a.seed = o.seed;
          a.estimator = "topk";
          record("topk", 0, a);
          for (int64_t s : o.samples) {
            a.estimator = "topk+tail";
            a.tail_samples = s;
            record("topk+tail", s, a);
          }
          // Gumbel draws are exact whatever k is, so k changes only their cost: every k at the
          // smallest n (to show the error does not move), k = round(sqrt n) elsewhere.
          const bool gumbel_here =
              n == o.ns.front() || k == std::llround(std::sqrt(static_cast<double>(n)));
          for (int64_t s : o.samples) {
            if (!gumbel_here) continue;
            const double cost = static_cast<double>(s) *
                                (static_cast<double>(k) + static_cast<double>(n - k) / (k + 1));
            if (cost > o.gumbel_budget) {
              skipped.push_back({{"keys", kind},
                                 {"n", n},
                                 {"scale", scale},
                                 {"k", k},
                                 {"estimator", "gumbel"},
                                 {"samples", s},
                                 {"expected_cost_bound", cost}});
              continue;
            }
            a.estimator = "gumbel";
            a.samples = s;
            a.groups = std::min(o.groups, s);
            record("gumbel", s, a);
          }
        }
      }
    }
  }
  return {{"params",
           {{"ns", o.ns},
            {"key_kinds", o.key_kinds},
            {"scales", o.scales},
            {"fixed_ks", o.fixed_ks},
            {"samples", o.samples},
            {"dk", o.dk},
            {"dv", o.dk},
            {"queries", o.queries},
            {"gumbel_groups", o.groups},
            {"gumbel_budget", o.gumbel_budget},
            {"gumbel_ks", "every k at the smallest n, round(sqrt n) at the others"},
            {"seed", o.seed},
            {"centres", SyntheticSpec{}.centres},
            {"noise", SyntheticSpec{}.noise}}},
          {"runs", runs},
          {"skipped", skipped}};
}

}  // namespace kvtune::study

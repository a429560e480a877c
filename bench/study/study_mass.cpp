// Study part 3a: the softmax mass the top-k holds, against the score scale and n, on synthetic
// banks. Scores are scale * <q, k> in double over every key (the dense reference).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "study.h"

namespace kvtune::study {

nlohmann::json run_mass_study(const MassStudyOptions& o) {
  torch::NoGradGuard no_grad;
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& kind : o.key_kinds) {
    for (int64_t dk : o.dks) {
      for (int64_t n : o.ns) {
        SyntheticSpec spec;
        spec.keys = kind;
        spec.n = n;
        spec.dk = dk;
        spec.dv = 1;  // values play no part here
        spec.queries = o.queries;
        spec.seed = o.seed;
        const auto bank = make_synthetic(spec);
        const auto keys64 = bank.keys.to(torch::kFloat64);
        const auto q64 = bank.queries.to(torch::kFloat64);
        const auto ks = k_grid(o.fixed_ks, n);
        // Query chunks keep the [chunk, n] score matrix near 128 MB at n = 1e6.
        const int64_t chunk = std::max<int64_t>(1, (int64_t(16) << 20) / n);
        std::vector<torch::Tensor> dots;
        for (int64_t r = 0; r < o.queries; r += chunk)
          dots.push_back(q64.narrow(0, r, std::min(chunk, o.queries - r)).matmul(keys64.t()));
        for (double scale_opt : o.scales) {
          const double scale = scale_opt > 0 ? scale_opt : std::sqrt(static_cast<double>(dk));
          std::vector<torch::Tensor> mass, inv_participation;
          for (const auto& d : dots) {
            const auto s = scale * d;
            mass.push_back(topk_mass(s, ks));
            // 1 / sum P^2: the number of keys the softmax effectively spreads over.
            const auto lse = s.logsumexp(1);
            inv_participation.push_back((2 * lse - (2 * s).logsumexp(1)).exp());
          }
          const auto m = torch::cat(mass, 0);
          const double n_eff = torch::cat(inv_participation, 0).mean().item<double>();
          nlohmann::json per_k = nlohmann::json::array();
          for (size_t i = 0; i < ks.size(); ++i) {
            const auto col = m.select(1, static_cast<int64_t>(i));
            per_k.push_back({{"k", ks[i]},
                             {"mean", col.mean().item<double>()},
                             {"median", col.median().item<double>()},
                             {"min", col.min().item<double>()},
                             {"max", col.max().item<double>()}});
          }
          runs.push_back({{"keys", kind},
                          {"dk", dk},
                          {"n", n},
                          {"scale", scale},
                          {"scale_name", scale_opt > 0 ? "fixed" : "sqrt(d_k)"},
                          {"n_eff", n_eff},
                          {"mass", per_k}});
          std::printf("mass %-9s d_k=%-3lld n=%-8lld scale=%-6.2f n_eff %-10.1f", kind.c_str(),
                      static_cast<long long>(dk), static_cast<long long>(n), scale, n_eff);
          for (const auto& e : per_k)
            std::printf(" k=%lld:%.3f", static_cast<long long>(e["k"].get<int64_t>()),
                        e["mean"].get<double>());
          std::printf("\n");
          std::fflush(stdout);
        }
      }
    }
  }
  return {{"params",
           {{"ns", o.ns},
            {"key_kinds", o.key_kinds},
            {"dks", o.dks},
            {"scales", o.scales},
            {"fixed_ks", o.fixed_ks},
            {"queries", o.queries},
            {"seed", o.seed},
            {"centres", SyntheticSpec{}.centres},
            {"noise", SyntheticSpec{}.noise}}},
          {"runs", runs}};
}

}  // namespace kvtune::study

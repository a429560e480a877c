// Synthetic banks and the small measurement helpers the study parts share.
#include <algorithm>
#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "common/check.h"
#include "study.h"

namespace kvtune::study {
namespace {

torch::Tensor unit_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, true).clamp_min(1e-12);
}

}  // namespace

SyntheticBank make_synthetic(const SyntheticSpec& spec) {
  KVT_CHECK(spec.keys == "random" || spec.keys == "clustered",
            "key distribution must be 'random' or 'clustered', got '", spec.keys, "'");
  KVT_CHECK(spec.n > 0 && spec.dk > 0 && spec.dv > 0 && spec.queries > 0 && spec.centres > 0,
            "synthetic bank: sizes must be positive");
  auto gen = at::detail::createCPUGenerator(spec.seed);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  SyntheticBank b;
  if (spec.keys == "random") {
    b.keys = unit_rows(torch::randn({spec.n, spec.dk}, gen, f32));
    b.queries = unit_rows(torch::randn({spec.queries, spec.dk}, gen, f32));
  } else {
    const auto centres = unit_rows(torch::randn({spec.centres, spec.dk}, gen, f32));
    const double sd = spec.noise / std::sqrt(static_cast<double>(spec.dk));
    const auto key_centre = torch::arange(spec.n, torch::kInt64).remainder(spec.centres);
    b.keys = unit_rows(centres.index_select(0, key_centre) +
                       sd * torch::randn({spec.n, spec.dk}, gen, f32));
    const auto query_centre = torch::randint(spec.centres, {spec.queries}, gen,
                                             torch::TensorOptions().dtype(torch::kInt64));
    b.queries = unit_rows(centres.index_select(0, query_centre) +
                          sd * torch::randn({spec.queries, spec.dk}, gen, f32));
  }
  b.values = torch::randn({spec.n, spec.dv}, gen, f32);
  b.keys = b.keys.contiguous();
  b.queries = b.queries.contiguous();
  return b;
}

std::vector<int64_t> k_grid(const std::vector<int64_t>& fixed, int64_t n) {
  std::vector<int64_t> ks;
  for (int64_t k : fixed)
    if (k <= n) ks.push_back(k);
  const double r = std::sqrt(static_cast<double>(n));
  for (int64_t k : {std::llround(r), std::llround(4 * r)})
    if (k <= n) ks.push_back(k);
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  return ks;
}

torch::Tensor topk_mass(const torch::Tensor& scores, const std::vector<int64_t>& ks) {
  const int64_t kmax = *std::max_element(ks.begin(), ks.end());
  const auto lse = scores.logsumexp(1, /*keepdim=*/true);
  const auto top = std::get<0>(scores.topk(std::min(kmax, scores.size(1)), 1));
  const auto cum = (top - lse).exp().cumsum(1);
  std::vector<torch::Tensor> cols;
  for (int64_t k : ks) cols.push_back(cum.select(1, std::min(k, cum.size(1)) - 1));
  return torch::stack(cols, 1);
}

RowErrors row_errors(const torch::Tensor& estimate, const torch::Tensor& reference,
                     double value_rms) {
  const auto ref = reference.to(torch::kFloat64);
  const auto diff = (estimate.to(torch::kFloat64) - ref).norm(2, 1);
  const auto rel = diff / ref.norm(2, 1).clamp_min(1e-300);
  RowErrors e;
  e.relative = rel.mean().item<double>();
  e.relative_median = rel.median().item<double>();
  e.per_value = (diff / value_rms).mean().item<double>();
  return e;
}

double loglog_slope(const std::vector<double>& x, const std::vector<double>& y) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int64_t m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (!(x[i] > 0 && y[i] > 0)) continue;
    const double lx = std::log(x[i]), ly = std::log(y[i]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    ++m;
  }
  if (m < 2) return std::nan("");
  return (m * sxy - sx * sy) / (m * sxx - sx * sx);
}

}  // namespace kvtune::study

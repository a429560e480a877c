// The sampled-attention study (docs/sampled-attention.md, "Study"): how far the top-k,
// top-k + tail and lazy Gumbel estimators are from the dense softmax, what lazy Gumbel costs
// against n, and how much softmax mass the top-k holds. A program that writes JSON for
// tools/plot-study, not a test: nothing here asserts, and times are measurements of one run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "index/index_config.h"

namespace kvtune::study {

// Synthetic keys and queries, unit rows (float32), and Gaussian values N(0, 1).
//  "random":    keys and queries uniform on the sphere (normalized Gaussians).
//  "clustered": `centres` random unit centres; key i is normalize(centre(i mod C) + noise g),
//               query normalize(random centre + noise g), g ~ N(0, I / d): near a centre.
struct SyntheticSpec {
  std::string keys = "random";  // "random" | "clustered"
  int64_t n = 1000;
  int64_t dk = 32;
  int64_t dv = 32;
  int64_t queries = 64;
  int64_t centres = 32;
  double noise = 0.5;  // norm of the perturbation before normalizing (about)
  uint64_t seed = 1;
};

struct SyntheticBank {
  torch::Tensor keys;     // [n, dk] float32, unit rows
  torch::Tensor values;   // [n, dv] float32
  torch::Tensor queries;  // [Q, dk] float32, unit rows
};

SyntheticBank make_synthetic(const SyntheticSpec& spec);

// The k values the study uses at bank size n: the fixed ones, then round(sqrt n) and
// round(4 sqrt n), sorted, duplicates and values above n removed.
std::vector<int64_t> k_grid(const std::vector<int64_t>& fixed, int64_t n);

// Top-k mass: for each query row, the softmax probability held by its k highest scores,
// for every k in `ks` (scores [R, n] double, rows independent). Returns [R, |ks|] double.
torch::Tensor topk_mass(const torch::Tensor& scores, const std::vector<int64_t>& ks);

// ||a_r - b_r|| / ||b_r|| per row, and ||a_r - b_r|| / rms (rms = sqrt(mean_j ||v_j||^2)).
struct RowErrors {
  double relative = 0;  // mean over rows of ||a_r - b_r|| / ||b_r||
  double relative_median = 0;
  double per_value = 0;  // mean over rows of ||a_r - b_r|| / value_rms
};
RowErrors row_errors(const torch::Tensor& estimate, const torch::Tensor& reference,
                     double value_rms);

// Least-squares slope of log y against log x (points with x, y > 0).
double loglog_slope(const std::vector<double>& x, const std::vector<double>& y);

// 1. Output error of topk, topk+tail and gumbel against dense, over k, samples, n, key
//    distribution and scale.
struct ErrorStudyOptions {
  std::vector<int64_t> ns = {1000, 10000, 100000};
  std::vector<std::string> key_kinds = {"random", "clustered"};
  std::vector<double> scales = {0.0, 32.0};  // 0: sqrt(d_k)
  std::vector<int64_t> fixed_ks = {1, 4, 16, 64, 256, 1024};
  std::vector<int64_t> samples = {16, 64, 256, 1024};  // gumbel samples, topk+tail l
  int64_t dk = 32;
  int64_t queries = 64;
  int64_t groups = 4;  // gumbel groups (the estimator's default)
  // Gumbel runs whose expected scored keys per query, samples * (k + (n - k) / (k + 1)), exceed
  // this are skipped (recorded as such): the bound is reached at low scale.
  double gumbel_budget = 4e6;
  uint64_t seed = 1;
};
nlohmann::json run_error_study(const ErrorStudyOptions& options);

// 2. Cost per query against n with k = round(sqrt n): score evaluations of lazy Gumbel and
//    wall time of dense, the Flat index search, the sampler's draws and the gumbel estimator.
struct CostStudyOptions {
  std::vector<int64_t> ns = {1000, 3000, 10000, 30000, 100000, 300000, 1000000};
  std::vector<std::string> key_kinds = {"random", "clustered"};  // timings on the first only
  int64_t dk = 64;
  int64_t queries = 32;
  int64_t samples = 128;  // draws per query for the sampler and the gumbel estimator
  int64_t repeats = 3;    // timings: the minimum over repeats
  int threads = 1;
  uint64_t seed = 1;
};
nlohmann::json run_cost_study(const CostStudyOptions& options);

// 3a. Top-k mass against scale and n on synthetic banks.
struct MassStudyOptions {
  std::vector<int64_t> ns = {1000, 10000, 100000, 1000000};
  std::vector<std::string> key_kinds = {"random", "clustered"};
  std::vector<int64_t> dks = {32, 64};
  std::vector<double> scales = {1.0, 0.0, 16.0, 32.0, 64.0};  // 0: sqrt(d_k)
  std::vector<int64_t> fixed_ks = {1, 4, 16, 32};
  int64_t queries = 64;
  uint64_t seed = 1;
};
nlohmann::json run_mass_study(const MassStudyOptions& options);

// 3b. Top-k mass on the banks of trained runs, with queries from the model on held-out text.
struct TrainedStudyOptions {
  std::vector<std::string> model_dirs;  // model folders (load_run_model), read only
  std::vector<std::string> texts = {"foldoc", "wn"};
  int64_t windows = 4;  // held-out windows of max_seq_len tokens per text
  std::vector<int64_t> fixed_ks = {1, 4, 16, 32};
  // The same keys and queries scored at other scales than the model's: how peaked their cosines
  // are (the model was trained at its own scale; these are not its outputs).
  std::vector<double> other_scales = {16, 32, 64};
};
nlohmann::json run_trained_study(const TrainedStudyOptions& options);

// 4. Recall@k and search time of approximate index configs against the exact (Flat) search on
//    one large synthetic bank per key distribution.
struct IndexStudyOptions {
  int64_t n = int64_t{1} << 20;
  int64_t dk = 64;
  std::vector<std::string> key_kinds = {"random", "clustered"};
  int64_t centres = 4096;  // clustered keys: centres (about 256 keys each at 2^20)
  std::vector<int64_t> ks = {32, 1024};
  int64_t queries = 256;
  // Configs to build (their factory, train_size and seed); each is searched at every breadth
  // of `nprobes`, or at its own nprobe when `nprobes` is empty.
  std::vector<IndexConfig> configs;
  std::vector<int> nprobes;
  int threads = 2;
  std::string scratch = "/tmp/kvtune_study_index.faiss";  // each built index is saved and read back
  uint64_t seed = 1;
};
nlohmann::json run_index_study(const IndexStudyOptions& options);

}  // namespace kvtune::study

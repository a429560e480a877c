// kvtune's CUDA memory layer, forward + backward, for the benchmark of docs/gpu.md: R = M x H
// query rows (M = 16384, H = 4), d_k = d_v = 128, k = 32, one trainable bank of N keys, N from
// 2^16 up. Timed with CUDA synchronization around each step (warm-up, median of repeats);
// sizes run in increasing order and stop once one step takes longer than the cap (see
// docs/gpu.md for what is expected). Writes JSON to argv[1].
// Built only with the CUDA binding; not run yet (no GPU in the session that wrote it).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <vector>

#include <torch/torch.h>

#include "attention/cuda/knn_attention_cuda.h"

int main(int argc, char** argv) {
  using clock = std::chrono::steady_clock;
  const char* json_path = argc > 1 ? argv[1] : "kvtune_cuda.json";
  const double cap_s = argc > 2 ? std::atof(argv[2]) : 60.0;
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  const int64_t M = 16384, H = 4, d = 128, k = 32;
  const auto dev = torch::Device(torch::kCUDA, 0);
  torch::manual_seed(0);
  std::ofstream json(json_path);
  json << "[";
  bool first = true;
  for (int logn : {16, 20, 22}) {
    for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const int64_t N = int64_t(1) << logn;
      auto keys =
          torch::nn::functional::normalize(torch::randn({N, d}, dev),
                                           torch::nn::functional::NormalizeFuncOptions().dim(1))
              .to(dtype)
              .requires_grad_(true);
      auto values = torch::randn({N, d}, dev).to(dtype).requires_grad_(true);
      auto q =
          torch::nn::functional::normalize(torch::randn({M * H, d}, dev),
                                           torch::nn::functional::NormalizeFuncOptions().dim(1))
              .requires_grad_(true);
      const auto dout = torch::randn({M * H, d}, dev);
      kvtune::KnnAttentionOptions options;
      options.k = k;
      options.scale = std::sqrt(double(d));
      auto step = [&] {
        const auto r =
            kvtune::cuda::knn_attention_cuda(q, {{keys, values, nullptr, "bench"}}, options);
        r.output.backward(dout);
        torch::cuda::synchronize();
        q.mutable_grad() = torch::Tensor();
        keys.mutable_grad() = torch::Tensor();
        values.mutable_grad() = torch::Tensor();
      };
      auto t0 = clock::now();
      step();  // warm-up
      const double first_s = std::chrono::duration<double>(clock::now() - t0).count();
      std::vector<double> ms;
      if (first_s < cap_s) {
        for (int rep = 0; rep < 3; ++rep) {
          t0 = clock::now();
          step();
          ms.push_back(1e3 * std::chrono::duration<double>(clock::now() - t0).count());
        }
        std::sort(ms.begin(), ms.end());
      }
      const double median = ms.empty() ? NAN : ms[ms.size() / 2];
      const char* name = dtype == torch::kFloat32 ? "float32" : "bfloat16";
      std::printf("kvtune_cuda %-8s N=%-8lld fwd+bwd %10.2f ms (warm-up %.2f s)\n", name,
                  static_cast<long long>(N), median, first_s);
      json << (first ? "" : ",") << "\n {\"method\": \"kvtune_cuda\", \"dtype\": \"" << name
           << "\", \"N\": " << N << ", \"ms\": " << (std::isnan(median) ? -1.0 : median)
           << ", \"warmup_s\": " << first_s << "}";
      first = false;
      if (first_s >= cap_s) {
        std::printf("stopping: one step took %.1f s (cap %.0f s)\n", first_s, cap_s);
        json << "\n]\n";
        return 0;
      }
    }
  }
  json << "\n]\n";
  return 0;
}

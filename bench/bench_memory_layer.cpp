// Memory-layer forward+backward on the CPU against the raw faiss search of the same queries
// (docs/benchmarks.md). M = 4096 tokens, H = 4 heads, d_k = d_v = 64, k = 32:
//   flat:  N = 2^16, exact search over the bank's own buffer
//   ivf:   N = 2^20, IVF1024,Flat with nprobe 32
// Counters: peak_rss (whole process, getrusage) and bank_bytes (keys + values + index), so run
// one size per process for the memory figure: --benchmark_filter=ivf.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <map>
#include <memory>

#include "bank/indexed_bank.h"
#include "model/memory_layer.h"

namespace kvtune {
namespace {

constexpr int64_t kTokens = 4096, kHeads = 4, kKeyDim = 64, kValueDim = 64, kK = 32;
constexpr int64_t kModel = 256;

struct Setup {
  std::shared_ptr<IndexedBank> bank;
  MemoryLayer layer{nullptr};
  torch::Tensor x;        // [M, d_model]
  torch::Tensor queries;  // [M * H, d_k] the layer's unit queries, float32
  int64_t bank_bytes = 0;
};

Setup& setup(const std::string& kind, bool trainable) {
  static std::map<std::string, std::unique_ptr<Setup>> cache;
  const std::string key = kind + (trainable ? "/trainable" : "/frozen");
  auto& slot = cache[key];
  if (slot) return *slot;
  // One bank per size, shared by frozen and trainable runs (no second copy in memory).
  for (auto& [other, s] : cache) {
    if (s && other.rfind(kind + "/", 0) == 0) {
      slot = std::make_unique<Setup>(*s);
      slot->bank->set_trainable(trainable);
      return *slot;
    }
  }
  torch::manual_seed(0);
  IndexConfig config;
  int64_t n = int64_t(1) << 16;
  if (kind == "ivf") {
    n = int64_t(1) << 20;
    config.factory = "IVF1024,Flat";
    config.nprobe = 32;
  }
  auto s = std::make_unique<Setup>();
  s->bank = std::make_shared<IndexedBank>(
      make_random_bank(kind, n, kKeyDim, kValueDim, /*seed=*/1, trainable), config);
  s->bank_bytes = s->bank->bank().keys.nbytes() + s->bank->bank().values.nbytes() +
                  s->bank->index().memory_bytes();
  MemoryLayerOptions options;
  options.d_model = kModel;
  options.heads = kHeads;
  options.key_dim = kKeyDim;
  options.value_dim = kValueDim;
  options.attention.k = kK;
  s->layer = MemoryLayer(options);
  s->layer->attach(s->bank);
  s->x = torch::randn({kTokens, kModel});
  torch::NoGradGuard no_grad;
  const auto q = s->layer->query->forward(s->x).reshape({-1, kKeyDim});
  s->queries = (q / q.norm(2, 1, true)).contiguous();
  slot = std::move(s);
  return *slot;
}

void report(benchmark::State& state, const Setup& s) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["peak_rss_MiB"] = double(usage.ru_maxrss) / 1024.0;
  state.counters["bank_MiB"] = double(s.bank_bytes) / (1024.0 * 1024.0);
  state.counters["queries"] = double(s.queries.size(0));
}

void BM_RawSearch(benchmark::State& state, const std::string& kind) {
  auto& s = setup(kind, false);
  const int64_t nq = s.queries.size(0);
  auto scores = torch::empty({nq, kK});
  auto ids = torch::empty({nq, kK}, torch::kInt64);
  for (auto _ : state) {
    s.bank->index().search(s.queries.data_ptr<float>(), nq, kK, scores.data_ptr<float>(),
                           ids.data_ptr<int64_t>());
    benchmark::DoNotOptimize(ids.data_ptr<int64_t>());
  }
  report(state, s);
}

void BM_LayerForwardBackward(benchmark::State& state, const std::string& kind, bool trainable) {
  auto& s = setup(kind, trainable);
  auto& bank = s.bank->mutable_bank();
  for (auto _ : state) {
    s.layer->zero_grad();
    bank.keys.mutable_grad() = torch::Tensor();
    bank.values.mutable_grad() = torch::Tensor();
    auto y = s.layer->forward(s.x);
    y.sum().backward();
    benchmark::DoNotOptimize(s.layer->query->weight.grad().data_ptr<float>());
  }
  report(state, s);
}

BENCHMARK_CAPTURE(BM_RawSearch, flat, std::string("flat"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LayerForwardBackward, flat, std::string("flat"), false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LayerForwardBackward, flat_trainable, std::string("flat"), true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_RawSearch, ivf, std::string("ivf"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LayerForwardBackward, ivf, std::string("ivf"), false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kvtune

// The CUDA kernels through their torch binding against the CPU path (ggml test-backend-ops
// style): fresh random inputs (seed printed), odd sizes, tolerances declared once per dtype.
// Built only when the binding exists (KVTUNE_WITH_CUDA); skipped when no CUDA device is present.
#include <gtest/gtest.h>

#include <optional>

#include <cmath>
#include <vector>

#include "attention/cuda/knn_attention_cuda.h"
#include "attention/knn_attention.h"
#include "attention_test_util.h"
#include "kernels/knn_attention_cpu.h"
#include "test_util.h"
#include "train/sparse_row_adam.h"

namespace kvtune {
namespace {

// GPU against CPU, relative to the largest reference entry. bf16: the GPU reads bf16 rows, the
// CPU reference the same values widened to float; the margin covers a changed top-k order.
double cuda_tol(torch::ScalarType bank_dtype) {
  return bank_dtype == torch::kBFloat16 ? 1e-2 : 1e-5;
}

#define SKIP_WITHOUT_CUDA_DEVICE() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

torch::Device gpu() {
  return torch::Device(torch::kCUDA, 0);
}

// Bank rows as stored on the GPU (dtype) and the float CPU copy of the same values.
struct TestBank {
  torch::Tensor keys_gpu, values_gpu, keys_cpu, values_cpu;
};

TestBank make_bank(int64_t n, int64_t dk, int64_t dv, torch::ScalarType dtype) {
  TestBank b;
  const auto keys = test::unit_rows(n, dk, torch::kFloat32).to(dtype);
  const auto values = torch::randn({n, dv}).to(dtype);
  b.keys_gpu = keys.to(gpu()).contiguous();
  b.values_gpu = values.to(gpu()).contiguous();
  b.keys_cpu = keys.to(torch::kFloat32).contiguous();
  b.values_cpu = values.to(torch::kFloat32).contiguous();
  return b;
}

std::vector<BankView> gpu_views(const std::vector<TestBank>& banks) {
  std::vector<BankView> v;
  for (const auto& b : banks) v.push_back({b.keys_gpu, b.values_gpu, nullptr, ""});
  return v;
}

std::vector<kernels::BankPointers<float>> cpu_pointers(const std::vector<TestBank>& banks) {
  std::vector<kernels::BankPointers<float>> p;
  int64_t offset = 0;
  for (const auto& b : banks) {
    p.push_back(
        {b.keys_cpu.data_ptr<float>(), b.values_cpu.data_ptr<float>(), b.keys_cpu.size(0), offset});
    offset += b.keys_cpu.size(0);
  }
  return p;
}

torch::Tensor all_keys_cpu(const std::vector<TestBank>& banks) {
  std::vector<torch::Tensor> k;
  for (const auto& b : banks) k.push_back(b.keys_cpu);
  return torch::cat(k);
}

class CudaKernels : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(CudaKernels, SearchFindsTheExactTopK) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const double tol = cuda_tol(dtype);
  for (int64_t n : {37, 5003, 70001}) {
    for (int64_t k : {1, 17, 128}) {
      const int64_t dk = 72, R = 29;
      const auto bank = make_bank(n, dk, 8, dtype);
      const auto q = test::unit_rows(R, dk, torch::kFloat32);
      const double scale = std::sqrt(static_cast<double>(dk));
      const auto got = cuda::topk_search(q.to(gpu()), bank.keys_gpu, k, scale, /*id_offset=*/5);
      const auto s_gpu = got.scores.cpu(), ids_gpu = got.ids.cpu();
      const auto ref_all = scale * q.matmul(bank.keys_cpu.t());
      const int64_t kept = std::min(k, n);
      const auto ref = std::get<0>(ref_all.topk(kept, 1));
      EXPECT_LT(test::rel_error(s_gpu.narrow(1, 0, kept), ref), tol) << "n " << n << " k " << k;
      // Each id's score is its own (not only the right values in the right order).
      const auto ids = ids_gpu.narrow(1, 0, kept);
      EXPECT_TRUE((ids >= 5).all().item<bool>());
      const auto own = ref_all.gather(1, ids - 5);
      EXPECT_LT(test::rel_error(s_gpu.narrow(1, 0, kept), own), tol);
      if (k > n) {
        EXPECT_TRUE((ids_gpu.narrow(1, kept, k - kept) == -1).all().item<bool>());
      }
    }
  }
}

// Past one GEMM: 4100 query rows (row blocks of 4096 and 4) against 9001 keys (chunks of 4096:
// the running best k is merged with every chunk's). Three copies of e_0 in three chunks score
// exactly `scale` against e_0, so the tie order (smaller id first) is checked exactly.
TEST_P(CudaKernels, SearchTilesRowBlocksAndChunks) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const double tol = cuda_tol(dtype);
  const int64_t n = 9001, dk = 72, R = 4100;
  auto keys = test::unit_rows(n, dk, torch::kFloat32);
  auto q = test::unit_rows(R, dk, torch::kFloat32);
  const auto e0 = torch::zeros({dk}).index_put_({0}, 1.0);
  for (int64_t id : {3, 5000, 9000}) keys[id] = e0;
  q[0] = e0;
  q[R - 1] = e0;
  const auto kq = keys.to(dtype).to(gpu()).contiguous();
  const auto kc = keys.to(dtype).to(torch::kFloat32);
  const double scale = 2.5;
  const auto ref_all = scale * q.matmul(kc.t());
  for (int64_t k : {1, 3, 128}) {
    const auto got = cuda::topk_search(q.to(gpu()), kq, k, scale);
    const auto s_gpu = got.scores.cpu(), ids = got.ids.cpu();
    const auto ref = std::get<0>(ref_all.topk(k, 1));
    EXPECT_LT(test::rel_error(s_gpu, ref), tol) << "k " << k;
    EXPECT_LT(test::rel_error(s_gpu, ref_all.gather(1, ids)), tol) << "k " << k;
    for (int64_t r : {int64_t(0), R - 1}) {
      const int64_t want[] = {3, 5000, 9000};
      for (int64_t j = 0; j < std::min<int64_t>(k, 3); ++j) {
        EXPECT_EQ(ids[r][j].item<int64_t>(), want[j]) << "row " << r << " rank " << j;
        EXPECT_EQ(s_gpu[r][j].item<float>(), static_cast<float>(scale)) << "row " << r;
      }
    }
  }
}

TEST(CudaKernelsMerge, MergeKeepsTheBestKOfEveryRow) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const int64_t R = 31, L = 301, k = 45;
  auto scores = torch::randn({R, L});
  auto ids = torch::stack(std::vector<torch::Tensor>(R, torch::randperm(100000).narrow(0, 0, L)));
  ids.masked_fill_(torch::rand({R, L}) < 0.1, -1);  // missing entries
  const auto got = cuda::merge_topk(scores.to(gpu()), ids.to(gpu()), k);
  const auto masked = scores.masked_fill(ids < 0, -INFINITY);
  const auto ref = masked.topk(k, 1);
  EXPECT_LT(test::rel_error(got.scores.cpu(), std::get<0>(ref)), 1e-7);
  EXPECT_TRUE(got.ids.cpu().equal(ids.gather(1, std::get<1>(ref))));
}

// Per-bank exact candidates with global ids, as search_candidates gives with Flat indexes.
torch::Tensor cpu_candidates(const torch::Tensor& q, const std::vector<TestBank>& banks, int64_t k,
                             double scale) {
  std::vector<torch::Tensor> cand;
  int64_t offset = 0;
  for (const auto& b : banks) {
    const int64_t kb = std::min(k, b.keys_cpu.size(0));
    cand.push_back(std::get<1>((scale * q.matmul(b.keys_cpu.t())).topk(kb, 1)) + offset);
    offset += b.keys_cpu.size(0);
  }
  return torch::cat(cand, 1).contiguous();
}

TEST_P(CudaKernels, ForwardAndBackwardMatchTheCpuKernels) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const auto dtype = GetParam();
  const double tol = cuda_tol(dtype);
  const int64_t R = 53, dk = 72, dv = 40, k = 23;
  const std::vector<TestBank> banks = {make_bank(1009, dk, dv, dtype),
                                       make_bank(77, dk, dv, dtype)};
  const double scale = std::sqrt(static_cast<double>(dk));
  const auto q = test::unit_rows(R, dk, torch::kFloat32);
  auto cand = cpu_candidates(q, banks, k, scale);
  cand.select(1, 3).fill_(-1);  // a missing candidate in every row
  const int64_t C = cand.size(1);

  // CPU kernels.
  const auto ptrs = cpu_pointers(banks);
  auto ids = torch::empty({R, k}, torch::kInt64);
  auto scores = torch::empty({R, k}), probs = torch::empty({R, k}), out = torch::empty({R, dv});
  kernels::topk_attention_forward<float>(q.data_ptr<float>(), R, dk, dv, ptrs.data(), 2,
                                         cand.data_ptr<int64_t>(), C, k, scale,
                                         ids.data_ptr<int64_t>(), scores.data_ptr<float>(),
                                         probs.data_ptr<float>(), out.data_ptr<float>());
  const auto dout = torch::randn({R, dv});
  auto g = torch::empty({R, k}), dq = torch::empty({R, dk});
  kernels::topk_attention_backward_query<float>(dout.data_ptr<float>(), out.data_ptr<float>(),
                                                ids.data_ptr<int64_t>(), probs.data_ptr<float>(), R,
                                                dk, dv, k, ptrs.data(), 2, scale,
                                                g.data_ptr<float>(), dq.data_ptr<float>());

  // GPU.
  const auto views = gpu_views(banks);
  const auto fwd = cuda::topk_attention_forward(q.to(gpu()), views, cand.to(gpu()), k, scale);
  EXPECT_TRUE(fwd.ids.cpu().equal(ids));
  EXPECT_LT(test::rel_error(fwd.scores.cpu(), scores), tol);
  EXPECT_LT(test::rel_error(fwd.probs.cpu(), probs), tol);
  EXPECT_LT(test::rel_error(fwd.output.cpu(), out), tol);
  const auto bw = cuda::topk_attention_backward(q.to(gpu()), views, fwd, dout.to(gpu()), scale,
                                                {true, false}, {true, true});
  EXPECT_LT(test::rel_error(bw.g.cpu(), g), tol);
  EXPECT_LT(test::rel_error(bw.dq.cpu(), dq), tol);

  // Row gradients against a dense scatter of the CPU pairs.
  int64_t offset = 0;
  for (size_t b = 0; b < banks.size(); ++b) {
    const int64_t n = banks[b].keys_cpu.size(0);
    auto dk_ref = torch::zeros({n, dk}), dv_ref = torch::zeros({n, dv});
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t j = 0; j < k; ++j) {
        const int64_t id = ids[r][j].item<int64_t>() - offset;
        if (id < 0 || id >= n) continue;
        dv_ref[id] += probs[r][j] * dout[r];
        dk_ref[id] += scale * g[r][j] * q[r];
      }
    }
    const auto& rg = bw.rows[b];
    const auto rows = rg.rows.cpu();
    EXPECT_TRUE(rows.equal(torch::nonzero(dv_ref.abs().sum(1)).reshape({-1})));
    EXPECT_LT(test::rel_error(rg.dvalues.cpu(), dv_ref.index_select(0, rows)), tol);
    if (b == 0) {
      EXPECT_LT(test::rel_error(rg.dkeys.cpu(), dk_ref.index_select(0, rows)), tol);
    } else {
      EXPECT_FALSE(rg.dkeys.defined());
    }
    offset += n;
  }
}

TEST(CudaKernelsOp, TopkOpAndGradientsMatchTheCpuOp) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const int64_t dk = 40, dv = 24;
  const auto keys = test::unit_rows(501, dk, torch::kFloat32);
  const auto values = torch::randn({501, dv});
  const auto queries = torch::randn({3, 7, dk});
  KnnAttentionOptions options;
  options.k = 19;
  auto run = [&](torch::Device device) {
    auto q = queries.to(device).requires_grad_(true);
    auto kt = keys.to(device).requires_grad_(true);
    auto vt = values.to(device).requires_grad_(true);
    const auto r = knn_attention(q, {{kt, vt, nullptr, "trained"}}, options);
    (r.output * torch::linspace(-1, 1, dv, torch::TensorOptions().device(device))).sum().backward();
    return std::vector<torch::Tensor>{r.output.cpu(), q.grad().cpu(), kt.grad().to_dense().cpu(),
                                      vt.grad().to_dense().cpu()};
  };
  const auto cpu = run(torch::kCPU);
  const auto cuda = run(gpu());
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_LT(test::rel_error(cuda[i], cpu[i]), cuda_tol(torch::kFloat32)) << "tensor " << i;
}

// The op searches once and its forward reuses the search's scores: the scores it returns are
// the search's, bit for bit (a re-scoring by another kernel would round differently).
TEST(CudaKernelsOp, ForwardReusesTheSearchScores) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const int64_t dk = 40, dv = 24;
  const auto a = make_bank(501, dk, dv, torch::kFloat32);
  const auto b = make_bank(77, dk, dv, torch::kFloat32);
  const auto q = test::unit_rows(21, dk, torch::kFloat32).to(gpu());
  KnnAttentionOptions options;
  options.k = 19;
  options.scale = 3.0;
  const auto views = gpu_views({a, b});
  const auto r = cuda::knn_attention_cuda(q, views, options);
  const auto top = cuda::search_topk_cuda(q, views, options.k, options.scale);
  EXPECT_TRUE(r.ids.cpu().equal(top.ids.cpu()));
  EXPECT_TRUE(r.scores.cpu().equal(top.scores.cpu()));
}

// Chi-square of the draws against the float64 softmax, per row, as a z score. A row whose first
// draw is past |z| = 4 (about 6e-5 by chance; 9 rows) gets an independent second draw with
// another seed, which must pass: a wrong sampler fails both, chance fails both about 4e-9 of the
// time (the suite's false-alarm budget, docs/reliability.md).
TEST(CudaKernelsGumbel, LazyGumbelSamplesTheFullSoftmax) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const uint64_t seed = test::test_seed();
  torch::manual_seed(seed);
  const int64_t n = 997, dk = 16, R = 3, samples = 100000;
  const auto bank = make_bank(n, dk, 4, torch::kFloat32);
  const auto q = test::unit_rows(R, dk, torch::kFloat32);
  const double scale = 4.0;
  const auto s = scale * q.to(torch::kFloat64).matmul(bank.keys_cpu.to(torch::kFloat64).t());
  for (int64_t k : {1, 8, 31}) {
    const auto top = cuda::topk_search(q.to(gpu()), bank.keys_gpu, k, scale);
    struct Draw {
      torch::Tensor ids, tail_scored;
    };
    const auto draw = [&](uint64_t draw_seed) {
      const auto d = cuda::lazy_gumbel_sample(q.to(gpu()), gpu_views({bank}), top.ids, top.scores,
                                              samples, scale, draw_seed);
      return Draw{d.ids.cpu(), d.tail_scored.cpu()};
    };
    // z of row r's counts; chi-square over bins of expected count >= 5 (the rest pooled).
    const auto z_of = [&](const Draw& d, int64_t r, double* chi2_out, double* df_out) {
      const auto p = torch::softmax(s[r], 0);
      const auto counts = torch::bincount(d.ids[r], {}, n).to(torch::kFloat64);
      const auto expected = p * samples;
      const auto big = expected >= 5;
      const auto e =
          torch::cat({expected.masked_select(big), expected.masked_select(~big).sum(0, true)});
      const auto o =
          torch::cat({counts.masked_select(big), counts.masked_select(~big).sum(0, true)});
      const auto keep = e > 0;
      const double chi2 = ((o - e).pow(2) / e).masked_select(keep).sum().item<double>();
      const double df = keep.sum().item<double>() - 1;
      *chi2_out = chi2;
      *df_out = df;
      return (chi2 - df) / std::sqrt(2 * df);
    };
    const Draw first = draw(seed);
    std::optional<Draw> second;
    for (int64_t r = 0; r < R; ++r) {
      double chi2 = 0, df = 0;
      double z = z_of(first, r, &chi2, &df);
      if (std::abs(z) >= 4.0) {
        if (!second) second = draw(seed ^ 0x9e3779b97f4a7c15ull);
        z = z_of(*second, r, &chi2, &df);
      }
      EXPECT_LT(std::abs(z), 4.0) << "k " << k << " row " << r << " chi2 " << chi2 << " df " << df
                                  << " (second draw)";
      const double mean_tail = first.tail_scored[r].item<double>() / samples;
      EXPECT_LE(mean_tail, 1.1 * double(n - k) / k + 1) << "k " << k;
    }
  }
}

TEST(CudaKernelsAdam, SparseRowAdamMatchesTheCpuOptimizer) {
  SKIP_WITHOUT_CUDA_DEVICE();
  torch::manual_seed(test::test_seed());
  const int64_t N = 513, d = 33;
  SparseRowAdamOptions o;
  o.lr = 3e-2;
  auto p_cpu = torch::randn({N, d}).requires_grad_(true);
  auto p_gpu = p_cpu.detach().to(gpu());
  SparseRowAdam adam({p_cpu}, o);
  auto m = torch::zeros({N, d}, torch::TensorOptions().device(gpu()));
  auto v = torch::zeros_like(m);
  auto steps = torch::zeros({N}, torch::TensorOptions().dtype(torch::kInt64).device(gpu()));
  for (int step = 0; step < 4; ++step) {
    const int64_t U = 50 + 37 * step;
    const auto rows = std::get<0>(torch::randperm(N).narrow(0, 0, U).sort());
    const auto grad = torch::randn({U, d});
    p_cpu.mutable_grad() = torch::sparse_coo_tensor(rows.unsqueeze(0), grad, {N, d});
    adam.step();
    cuda::sparse_row_adam_step(p_gpu, m, v, steps, rows.to(gpu()), grad.to(gpu()), o.lr, o.beta1,
                               o.beta2, o.eps);
    adam.zero_grad();
  }
  const auto state = adam.state();
  EXPECT_LT(test::rel_error(p_gpu.cpu(), p_cpu.detach()), 1e-5);
  EXPECT_LT(test::rel_error(m.cpu(), state[0]), 1e-5);
  EXPECT_LT(test::rel_error(v.cpu(), state[1]), 1e-5);
  EXPECT_TRUE(steps.cpu().equal(state[2]));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaKernels, ::testing::Values(torch::kFloat32, torch::kBFloat16));

}  // namespace
}  // namespace kvtune

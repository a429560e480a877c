// Host-side checks of the device helpers that need no GPU (kernels/cuda/common.cuh): Philox
// known answers, the open uniforms, the (score, id) order and the tail-id numbering; and of the
// launch shapes (shared memory per launch, the search's plans). Compiled by
// nvcc and run on the CPU by tools/check-cuda, so they run where no GPU is.
#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  using namespace kvtune::kernels::cuda_detail;
  // Random123's known-answer vectors for philox4x32-10 (kat_vectors): counter, key -> output.
  struct Kat {
    uint4 ctr;
    uint2 key;
    uint4 out;
  };
  const Kat kats[] = {
      {make_uint4(0, 0, 0, 0), make_uint2(0, 0),
       make_uint4(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)},
      {make_uint4(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu),
       make_uint2(0xffffffffu, 0xffffffffu),
       make_uint4(0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)},
      {make_uint4(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u),
       make_uint2(0xa4093822u, 0x299f31d0u),
       make_uint4(0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)},
  };
  for (const auto& k : kats) {
    const uint4 o = philox4x32_10(k.ctr, k.key);
    std::printf("philox4x32_10 -> %08x %08x %08x %08x (expected %08x %08x %08x %08x)\n", o.x, o.y,
                o.z, o.w, k.out.x, k.out.y, k.out.z, k.out.w);
    expect(o.x == k.out.x && o.y == k.out.y && o.z == k.out.z && o.w == k.out.w,
           "Philox4x32-10 known answer");
  }

  // Uniforms: inside (0, 1), mean 1/2, variance 1/12, over distinct rows / draws / blocks.
  double sum = 0, sum2 = 0;
  const int n = 1 << 18;
  bool inside = true;
  for (int i = 0; i < n; ++i) {
    const double2 u = philox_uniform2(12345, i % 97, i / 97, i % 5);
    inside = inside && u.x > 0 && u.x < 1 && u.y > 0 && u.y < 1;
    sum += u.x + u.y;
    sum2 += u.x * u.x + u.y * u.y;
  }
  const double mean = sum / (2.0 * n), var = sum2 / (2.0 * n) - mean * mean;
  std::printf("uniforms: mean %.5f (0.5), variance %.5f (%.5f)\n", mean, var, 1.0 / 12);
  expect(inside, "uniforms in the open interval");
  // Standard errors: sqrt(1/12 / 2n) ~ 4e-4 for the mean; 5 of them.
  expect(mean > 0.498 && mean < 0.502, "uniform mean");
  expect(var > 1.0 / 12 - 2e-3 && var < 1.0 / 12 + 2e-3, "uniform variance");

  // The order of the CPU kernels: score descending, ties to the smaller id, invalid last.
  expect(better(2.f, 7, 1.f, 3), "higher score first");
  expect(better(1.f, 3, 1.f, 7) && !better(1.f, 7, 1.f, 3), "ties to the smaller id");
  expect(better(-1e30f, 9, 5.f, -1) && !better(5.f, -1, -1e30f, 9), "invalid ids last");

  // Tail ids: the t-th key not in S, against a brute-force list, for several S.
  const int64_t keys = 300;
  for (const std::vector<int64_t>& s : std::vector<std::vector<int64_t>>{
           {}, {0}, {299}, {0, 1, 2, 3}, {5, 6, 100, 101, 102, 250, 299}}) {
    std::vector<int64_t> before;
    for (size_t j = 0; j < s.size(); ++j) before.push_back(s[j] - static_cast<int64_t>(j));
    const std::set<int64_t> in_s(s.begin(), s.end());
    std::vector<int64_t> tail;
    for (int64_t id = 0; id < keys; ++id)
      if (!in_s.count(id)) tail.push_back(id);
    bool ok = true;
    for (size_t t = 0; t < tail.size(); ++t)
      ok = ok && tail_id(before.data(), static_cast<int>(s.size()), t) == tail[t];
    expect(ok, "tail_id numbering");
  }

  // Launch limits that must hold on sm_80 as well as sm_90: no launch above the default 48 KiB
  // of shared memory per block (kCudaSmemBudget), at every size the binding lets through.
  using namespace kvtune::kernels;
  bool smem_ok = topk_select_smem_bytes() <= kCudaSmemBudget &&
                 lazy_gumbel_smem_bytes(kCudaMaxK, kCudaMaxDim) <= kCudaSmemBudget;
  for (int64_t c = 1; c <= kCudaMaxCandidates; ++c)
    smem_ok = smem_ok && topk_forward_smem_bytes(c) <= kCudaSmemBudget &&
              topk_forward_warps(c) >= 1 && topk_forward_warps(c) <= 4;
  std::printf(
      "shared memory: select %zu B, lazy Gumbel %zu B (k %d, d_k %d), forward %zu B "
      "(C = %d, %d warps) of %zu B\n",
      topk_select_smem_bytes(), lazy_gumbel_smem_bytes(kCudaMaxK, kCudaMaxDim), kCudaMaxK,
      kCudaMaxDim, topk_forward_smem_bytes(kCudaMaxCandidates), kCudaMaxCandidates,
      topk_forward_warps(kCudaMaxCandidates), kCudaSmemBudget);
  expect(smem_ok, "every launch within 48 KiB of shared memory");

  // Search plans: rows and keys tiled, the score buffer bounded whatever the bank's size (no
  // allocation that grows with N), slices of at least 1024 keys.
  bool plan_ok = true;
  size_t largest = 0;
  for (int64_t R :
       {int64_t(1), int64_t(29), int64_t(1024), int64_t(4096), int64_t(65536), int64_t(1) << 20})
    for (int64_t N : {int64_t(1), int64_t(37), int64_t(5003), int64_t(70001), int64_t(1) << 20,
                      int64_t(1) << 26, int64_t(1) << 30})
      for (int64_t k : {int64_t(1), int64_t(32), int64_t(kCudaMaxK)})
        for (bool bf16 : {false, true}) {
          const auto p = topk_search_plan(R, N, /*dk=*/kCudaMaxDim, k, bf16, 132);
          const bool ok =
              p.row_block >= 1 && p.row_block <= std::min<int64_t>(R, 4096) && p.chunk >= 1 &&
              p.chunk <= N && p.chunk <= (int64_t(1) << 20) &&
              (p.chunk == N || p.row_block * p.chunk * 4 <= kCudaSearchScoreBytes ||
               p.chunk == 4096) &&
              p.slices >= 1 && (p.slices == 1 || p.chunk / p.slices >= 1024) &&
              p.workspace_bytes >= 4 * static_cast<size_t>(p.row_block * p.chunk) +
                                       12 * static_cast<size_t>(p.row_block * (2 + p.slices) * k);
          plan_ok = plan_ok && ok;
          largest = std::max(largest, p.workspace_bytes);
        }
  std::printf("search plans: largest workspace %zu MiB\n", largest >> 20);
  expect(plan_ok, "search plans tile the rows and keys within their limits");
  expect(largest <= (size_t(512) << 20), "search workspace bounded (512 MiB) for any bank size");
  expect(topk_search_plan(0, 10, 8, 4, false, 132).workspace_bytes == 0, "empty plan");

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "host checks passed", failures);
  return failures ? 1 : 0;
}

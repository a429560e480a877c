// Device helpers shared by the CUDA kernels: loads of float / bf16 rows, the (score, id) order,
// warp reductions, warp top-k selection, bank lookup and Philox4x32-10. Not a public header.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/knn_attention_cuda.h"

// Returns the error of a CUDA call from the enclosing function (kernels never throw).
#define KVT_CUDA_TRY(expr)                        \
  do {                                            \
    const cudaError_t kvt_err_ = (expr);          \
    if (kvt_err_ != cudaSuccess) return kvt_err_; \
  } while (0)

namespace kvtune::kernels::cuda_detail {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float load(const float* p) {
  return *p;
}
__device__ __forceinline__ float load(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

// The order of the CPU kernels: score descending, ties to the smaller id; invalid (id < 0) last.
// S: float for scores, double for the samplers' perturbed scores.
template <typename S>
__host__ __device__ __forceinline__ bool better(S s1, int64_t i1, S s2, int64_t i2) {
  if (i1 < 0) return false;
  if (i2 < 0) return true;
  return s1 > s2 || (s1 == s2 && i1 < i2);
}

// Every lane gets the warp's best (score, id).
template <typename S>
__device__ __forceinline__ void warp_best(S& s, int64_t& id) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const S os = __shfl_xor_sync(kFullMask, s, off);
    const int64_t oi = __shfl_xor_sync(kFullMask, id, off);
    if (better(os, oi, s, id)) {
      s = os;
      id = oi;
    }
  }
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(kFullMask, x, off);
  return x;
}

// The best k of `count` (score, id) entries (ids distinct; id < 0 skipped), sorted, into
// out_s / out_ids [k] (padded -inf / -1). Called by a whole warp. Round j picks the best entry
// worse than round j-1's pick, so the input is only read; the picks wait in registers (lane
// j % 32, slot j / 32) until every read is done, so out may alias the input.
// Returns the number of valid entries written. Cost: k rounds over count / 32 entries per lane.
__device__ inline int warp_select(const float* s, const int64_t* ids, int count, int k,
                                  float* out_s, int64_t* out_ids) {
  constexpr int kSlots = kCudaMaxK / kWarp;
  const int lane = threadIdx.x % kWarp;
  float held_s[kSlots];
  int64_t held_id[kSlots];
#pragma unroll
  for (int t = 0; t < kSlots; ++t) {
    held_s[t] = -INFINITY;
    held_id[t] = -1;
  }
  float prev_s = INFINITY;
  int64_t prev_id = -1;  // none yet
  int found = 0;
  for (int j = 0; j < k; ++j) {
    float bs = -INFINITY;
    int64_t bi = -1;
    for (int e = lane; e < count; e += kWarp) {
      const float es = s[e];
      const int64_t ei = ids[e];
      if (ei < 0) continue;
      if (prev_id >= 0 && !better(prev_s, prev_id, es, ei)) continue;
      if (better(es, ei, bs, bi)) {
        bs = es;
        bi = ei;
      }
    }
    warp_best(bs, bi);
    if (bi < 0) break;
#pragma unroll
    for (int t = 0; t < kSlots; ++t) {
      if (j == t * kWarp + lane) {
        held_s[t] = bs;
        held_id[t] = bi;
      }
    }
    prev_s = bs;
    prev_id = bi;
    ++found;
  }
  __syncwarp();
#pragma unroll
  for (int t = 0; t < kSlots; ++t) {
    const int j = t * kWarp + lane;
    if (j < k) {
      out_s[j] = held_s[t];
      out_ids[j] = held_id[t];
    }
  }
  __syncwarp();
  return found;
}

// Banks passed by value to a kernel.
template <typename T>
struct BankSet {
  BankPointers<T> bank[kCudaMaxBanks];
  int count = 0;
};

template <typename T>
inline cudaError_t make_bank_set(const BankPointers<T>* banks, int nbanks, BankSet<T>* set) {
  if (nbanks < 1 || nbanks > kCudaMaxBanks) return cudaErrorInvalidValue;
  for (int b = 0; b < nbanks; ++b) set->bank[b] = banks[b];
  set->count = nbanks;
  return cudaSuccess;
}

// The key and value rows of global id `id`; null pointers when no bank holds it. The loop over
// banks is unrolled so that the kernel parameter is indexed by constants only (a run-time index
// would copy the whole BankSet to local memory).
template <typename T>
struct RowRef {
  const T* key = nullptr;
  const T* value = nullptr;
};

template <typename T>
__device__ __forceinline__ RowRef<T> locate(const BankSet<T>& set, int64_t id, int64_t dk,
                                            int64_t dv) {
  RowRef<T> ref;
  if (id < 0) return ref;
#pragma unroll
  for (int b = 0; b < kCudaMaxBanks; ++b) {
    const int64_t local = id - set.bank[b].offset;
    if (b < set.count && local >= 0 && local < set.bank[b].rows) {
      ref.key = set.bank[b].keys + local * dk;
      ref.value = set.bank[b].values + local * dv;
    }
  }
  return ref;
}

// <x, row> over d elements, x in float (shared or global), row float or bf16; whole warp, all
// lanes get the sum.
template <typename T>
__device__ __forceinline__ float warp_dot(const float* x, const T* row, int64_t d) {
  float acc = 0.f;
  for (int64_t i = threadIdx.x % kWarp; i < d; i += kWarp) acc += x[i] * load(row + i);
  return warp_sum(acc);
}

// Philox4x32-10 (Salmon et al. 2011, the Random123 constants): counter-based, so any (row,
// draw, block) has its own random numbers with no state to carry. Host-callable too, for the
// known-answer check in tests/cuda/host_checks.cu.
__host__ __device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.x;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.z;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = make_uint4(hi1 ^ c.y ^ key.x, lo1, hi0 ^ c.w ^ key.y, lo0);
    key.x += kW0;
    key.y += kW1;
  }
  return c;
}

// Two uniforms in the open interval (0, 1), 53 bits each, centred in their cell (as the CPU's
// open_uniform), from block `block` of the stream (seed, row, draw).
__host__ __device__ __forceinline__ double2 philox_uniform2(uint64_t seed, uint64_t row,
                                                            uint32_t draw, uint32_t block) {
  const uint4 x = philox4x32_10(
      make_uint4(static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32), draw, block),
      make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
  const uint64_t a = ((static_cast<uint64_t>(x.x) << 32) | x.y) >> 11;
  const uint64_t b = ((static_cast<uint64_t>(x.z) << 32) | x.w) >> 11;
  constexpr double kTwoM53 = 1.0 / 9007199254740992.0;
  return make_double2((static_cast<double>(a) + 0.5) * kTwoM53,
                      (static_cast<double>(b) + 0.5) * kTwoM53);
}

// The t-th key (0-based) not in S, S given as before[j] = sorted_S[j] - j for j < ks (the
// numbering of TailIds in attention/lazy_gumbel.h): t plus the entries with before[j] <= t.
__host__ __device__ __forceinline__ int64_t tail_id(const int64_t* before, int ks, int64_t t) {
  int lo = 0, hi = ks;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (before[mid] <= t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return t + lo;
}

inline unsigned blocks_for(int64_t items, int per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

}  // namespace kvtune::kernels::cuda_detail

#include "attention/cuda/knn_attention_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "attention/impl/row_gradient.h"
#include "common/check.h"
#include "kernels/knn_attention_cuda.h"

// Every kernel call is checked: a launch error is a kvtune::Error naming the call.
#define KVT_CUDA_CHECK(expr)                                                                   \
  do {                                                                                         \
    const cudaError_t kvt_err_ = (expr);                                                       \
    KVT_CHECK(kvt_err_ == cudaSuccess, #expr, " failed: ", cudaGetErrorString(kvt_err_), " (", \
              __FILE__, ":", __LINE__, ")");                                                   \
  } while (0)

namespace kvtune::cuda {
namespace {

cudaStream_t current_stream() {
  return at::cuda::getCurrentCUDAStream().stream();
}

void check_cuda_tensor(const torch::Tensor& t, const char* what, torch::ScalarType dtype,
                       int64_t dim) {
  KVT_CHECK(t.defined() && t.is_cuda(), what, " must be a CUDA tensor");
  KVT_CHECK(t.scalar_type() == dtype, what, " must be ", dtype, ", got ", t.scalar_type());
  KVT_CHECK(t.dim() == dim, what, " must have ", dim, " dimensions, got ", t.dim());
  KVT_CHECK(t.is_contiguous(), what, " must be contiguous");
}

void check_bank_dtype(const torch::Tensor& t, const char* what) {
  KVT_CHECK(t.defined() && t.is_cuda() && t.dim() == 2 && t.is_contiguous(), what,
            " must be a contiguous 2-D CUDA tensor");
  KVT_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16, what,
            " must be float32 or bfloat16, got ", t.scalar_type());
}

template <typename T>
const T* ptr(const torch::Tensor& t);
template <>
const float* ptr<float>(const torch::Tensor& t) {
  return t.data_ptr<float>();
}
template <>
const __nv_bfloat16* ptr<__nv_bfloat16>(const torch::Tensor& t) {
  return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>());
}

template <typename T>
std::vector<kernels::BankPointers<T>> bank_pointers(const std::vector<BankView>& banks) {
  std::vector<kernels::BankPointers<T>> ptrs;
  int64_t offset = 0;
  for (const auto& b : banks) {
    ptrs.push_back({ptr<T>(b.keys), ptr<T>(b.values), b.size(), offset});
    offset += b.size();
  }
  return ptrs;
}

// Checks of the op's inputs on CUDA; returns the banks' dtype.
torch::ScalarType check_banks(const torch::Tensor& q_unit, const std::vector<BankView>& banks) {
  check_cuda_tensor(q_unit, "queries", torch::kFloat32, 2);
  KVT_CHECK(!banks.empty() && banks.size() <= static_cast<size_t>(kernels::kCudaMaxBanks),
            "the CUDA path takes 1 to ", kernels::kCudaMaxBanks, " banks, got ", banks.size());
  KVT_CHECK(q_unit.size(1) <= kernels::kCudaMaxDim,
            "the CUDA path takes d_k <= ", kernels::kCudaMaxDim, ", got ", q_unit.size(1));
  const auto dtype = banks[0].keys.scalar_type();
  for (size_t b = 0; b < banks.size(); ++b) {
    const auto& bank = banks[b];
    const std::string name =
        bank.name.empty() ? "bank " + std::to_string(b) : "bank '" + bank.name + "'";
    check_bank_dtype(bank.keys, (name + " keys").c_str());
    check_bank_dtype(bank.values, (name + " values").c_str());
    KVT_CHECK(bank.keys.scalar_type() == dtype && bank.values.scalar_type() == dtype, name,
              ": every bank tensor must have bank 0's dtype ", dtype);
    KVT_CHECK(bank.keys.device() == q_unit.device() && bank.values.device() == q_unit.device(),
              name, " is on ", bank.keys.device(), " but the queries are on ", q_unit.device());
    KVT_CHECK(bank.keys.size(1) == q_unit.size(1), name, " has key dim ", bank.keys.size(1),
              " but the queries have d_k = ", q_unit.size(1));
    KVT_CHECK(bank.values.size(1) == banks[0].values.size(1) &&
                  bank.values.size(1) <= kernels::kCudaMaxDim,
              name, ": d_v must be bank 0's and <= ", kernels::kCudaMaxDim);
    KVT_CHECK(bank.keys.size(0) == bank.values.size(0) && bank.keys.size(0) > 0, name,
              ": keys and values must have the same, positive, number of rows");
  }
  return dtype;
}

// The slot map of topk_attention_backward_rows_cuda: int64 [n], every entry -1 between calls
// (the kernels reset what they set). One per (thread, device, stream), grown when a larger bank
// comes, kept for the thread's life: a backward allocates nothing of the bank's size and runs
// no memset over it once warm. Leaked on purpose at exit (freeing CUDA memory from a static
// destructor can run after the driver shut down).
int64_t* slot_map(const torch::Device& device, int64_t n) {
  struct Entry {
    int device;
    cudaStream_t stream;
    torch::Tensor slots;
  };
  thread_local auto* entries = new std::vector<Entry>();
  const cudaStream_t stream = current_stream();
  for (auto& e : *entries) {
    if (e.device != device.index() || e.stream != stream) continue;
    if (e.slots.size(0) < n)
      e.slots = torch::full({n}, -1, torch::TensorOptions().device(device).dtype(torch::kInt64));
    return e.slots.data_ptr<int64_t>();
  }
  entries->push_back(
      {device.index(), stream,
       torch::full({n}, -1, torch::TensorOptions().device(device).dtype(torch::kInt64))});
  return entries->back().slots.data_ptr<int64_t>();
}

void check_k(int64_t k) {
  KVT_CHECK(k >= 1 && k <= kernels::kCudaMaxK, "the CUDA path takes 1 <= k <= ", kernels::kCudaMaxK,
            ", got ", k);
}

}  // namespace

TopkLists topk_search(const torch::Tensor& q_unit, const torch::Tensor& keys, int64_t k,
                      double scale, int64_t id_offset) {
  check_cuda_tensor(q_unit, "queries", torch::kFloat32, 2);
  check_bank_dtype(keys, "keys");
  check_k(k);
  KVT_CHECK(keys.size(1) == q_unit.size(1) && keys.size(1) <= kernels::kCudaMaxDim,
            "keys have dim ", keys.size(1), ", queries ", q_unit.size(1),
            " (<= ", kernels::kCudaMaxDim, ")");
  const c10::cuda::CUDAGuard guard(q_unit.device());
  const int64_t R = q_unit.size(0), N = keys.size(0), dk = q_unit.size(1);
  auto f32 = q_unit.options();
  TopkLists out{torch::empty({R, k}, f32), torch::empty({R, k}, f32.dtype(torch::kInt64))};
  if (R == 0) return out;
  const bool bf16 = keys.scalar_type() == torch::kBFloat16;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const auto plan = kernels::topk_search_plan(R, N, dk, k, bf16, sms);
  // From the caching allocator: no cudaMalloc and no synchronization once it is warm.
  auto workspace =
      torch::empty({static_cast<int64_t>(plan.workspace_bytes)}, f32.dtype(torch::kUInt8));
  cublasHandle_t blas = at::cuda::getCurrentCUDABlasHandle();
  if (!bf16) {
    KVT_CUDA_CHECK(kernels::topk_search_cuda<float>(
        blas, plan, q_unit.data_ptr<float>(), R, dk, ptr<float>(keys), N, id_offset,
        static_cast<float>(scale), k, workspace.data_ptr(), out.scores.data_ptr<float>(),
        out.ids.data_ptr<int64_t>(), k, current_stream()));
  } else {
    KVT_CUDA_CHECK(kernels::topk_search_cuda<__nv_bfloat16>(
        blas, plan, q_unit.data_ptr<float>(), R, dk, ptr<__nv_bfloat16>(keys), N, id_offset,
        static_cast<float>(scale), k, workspace.data_ptr(), out.scores.data_ptr<float>(),
        out.ids.data_ptr<int64_t>(), k, current_stream()));
  }
  return out;
}

TopkLists merge_topk(const torch::Tensor& scores, const torch::Tensor& ids, int64_t k) {
  check_cuda_tensor(scores, "scores", torch::kFloat32, 2);
  check_cuda_tensor(ids, "ids", torch::kInt64, 2);
  KVT_CHECK(scores.sizes() == ids.sizes(), "scores and ids must have the same shape");
  check_k(k);
  const c10::cuda::CUDAGuard guard(scores.device());
  const int64_t R = scores.size(0), L = scores.size(1);
  TopkLists out{torch::empty({R, k}, scores.options()), torch::empty({R, k}, ids.options())};
  KVT_CUDA_CHECK(kernels::topk_merge_cuda(scores.data_ptr<float>(), ids.data_ptr<int64_t>(), R, L,
                                          k, out.scores.data_ptr<float>(),
                                          out.ids.data_ptr<int64_t>(), current_stream()));
  return out;
}

TopkLists search_topk_cuda(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                           int64_t k, double scale) {
  check_banks(q_unit, banks);
  std::vector<torch::Tensor> s, i;
  int64_t offset = 0;
  for (const auto& b : banks) {
    auto l = topk_search(q_unit, b.keys, k, scale, offset);
    s.push_back(l.scores);
    i.push_back(l.ids);
    offset += b.size();
  }
  if (banks.size() == 1) return {s[0], i[0]};
  return merge_topk(torch::cat(s, 1).contiguous(), torch::cat(i, 1).contiguous(), k);
}

TopkForward topk_attention_forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                   const TopkLists& top) {
  const auto dtype = check_banks(q_unit, banks);
  check_cuda_tensor(top.ids, "top ids", torch::kInt64, 2);
  check_cuda_tensor(top.scores, "top scores", torch::kFloat32, 2);
  KVT_CHECK(top.ids.size(0) == q_unit.size(0) && top.scores.sizes() == top.ids.sizes(),
            "top ids and scores must be [R, k] for R query rows");
  const int64_t k = top.ids.size(1);
  check_k(k);
  const c10::cuda::CUDAGuard guard(q_unit.device());
  const int64_t R = q_unit.size(0), dv = banks[0].values.size(1);
  auto f32 = q_unit.options();
  TopkForward r{top.ids, top.scores, torch::empty({R, k}, f32), torch::empty({R, dv}, f32)};
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const auto ptrs = bank_pointers<T>(banks);
    KVT_CUDA_CHECK(kernels::topk_attention_aggregate_cuda<T>(
        r.ids.data_ptr<int64_t>(), r.scores.data_ptr<float>(), R, k, dv, ptrs.data(),
        static_cast<int>(ptrs.size()), r.probs.data_ptr<float>(), r.output.data_ptr<float>(),
        current_stream()));
  };
  if (dtype == torch::kFloat32)
    launch(float{});
  else
    launch(__nv_bfloat16{});
  return r;
}

TopkForward topk_attention_forward(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                   const torch::Tensor& cand, int64_t k, double scale) {
  const auto dtype = check_banks(q_unit, banks);
  check_cuda_tensor(cand, "candidates", torch::kInt64, 2);
  check_k(k);
  KVT_CHECK(cand.size(0) == q_unit.size(0) && cand.size(1) >= 1 &&
                cand.size(1) <= kernels::kCudaMaxCandidates,
            "candidates must be [R, C] with 1 <= C <= ", kernels::kCudaMaxCandidates);
  const c10::cuda::CUDAGuard guard(q_unit.device());
  const int64_t R = q_unit.size(0), dk = q_unit.size(1), dv = banks[0].values.size(1);
  auto f32 = q_unit.options();
  TopkForward r{torch::empty({R, k}, f32.dtype(torch::kInt64)), torch::empty({R, k}, f32),
                torch::empty({R, k}, f32), torch::empty({R, dv}, f32)};
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const auto ptrs = bank_pointers<T>(banks);
    KVT_CUDA_CHECK(kernels::topk_attention_forward_cuda<T>(
        q_unit.data_ptr<float>(), R, dk, dv, ptrs.data(), static_cast<int>(ptrs.size()),
        cand.data_ptr<int64_t>(), cand.size(1), k, static_cast<float>(scale),
        r.ids.data_ptr<int64_t>(), r.scores.data_ptr<float>(), r.probs.data_ptr<float>(),
        r.output.data_ptr<float>(), current_stream()));
  };
  if (dtype == torch::kFloat32)
    launch(float{});
  else
    launch(__nv_bfloat16{});
  return r;
}

TopkBackward topk_attention_backward(const torch::Tensor& q_unit,
                                     const std::vector<BankView>& banks, const TopkForward& fwd,
                                     const torch::Tensor& dout, double scale,
                                     const std::vector<bool>& want_keys,
                                     const std::vector<bool>& want_values) {
  const auto dtype = check_banks(q_unit, banks);
  check_cuda_tensor(dout, "output gradient", torch::kFloat32, 2);
  KVT_CHECK(want_keys.size() == banks.size() && want_values.size() == banks.size(),
            "one want_keys / want_values flag per bank");
  const c10::cuda::CUDAGuard guard(q_unit.device());
  const int64_t R = q_unit.size(0), dk = q_unit.size(1), dv = fwd.output.size(1);
  const int64_t k = fwd.ids.size(1);
  TopkBackward r;
  r.dq = torch::empty_like(q_unit);
  r.g = torch::empty({R, k}, q_unit.options());
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const auto ptrs = bank_pointers<T>(banks);
    KVT_CUDA_CHECK(kernels::topk_attention_backward_query_cuda<T>(
        dout.data_ptr<float>(), fwd.output.data_ptr<float>(), fwd.ids.data_ptr<int64_t>(),
        fwd.probs.data_ptr<float>(), R, dk, dv, k, ptrs.data(), static_cast<int>(ptrs.size()),
        static_cast<float>(scale), r.g.data_ptr<float>(), r.dq.data_ptr<float>(),
        current_stream()));
  };
  if (dtype == torch::kFloat32)
    launch(float{});
  else
    launch(__nv_bfloat16{});

  // Row gradients of every bank: kernels for all banks first, then one copy of the touched-row
  // counts to the host (the only synchronization of the backward).
  struct Pending {
    torch::Tensor touched, dkeys, dvalues;
    bool asked = false;
  };
  std::vector<Pending> pending(banks.size());
  auto i64 = q_unit.options().dtype(torch::kInt64);
  auto counts = torch::zeros({static_cast<int64_t>(banks.size())}, i64);
  int64_t offset = 0;
  for (size_t b = 0; b < banks.size(); ++b) {
    const int64_t n = banks[b].size();
    Pending& p = pending[b];
    p.asked = want_keys[b] || want_values[b];
    if (p.asked) {
      const int64_t cap = std::min(R * k, n);
      int64_t* slot = slot_map(q_unit.device(), n);
      p.touched = torch::empty({cap}, i64);
      p.dkeys = want_keys[b] ? torch::zeros({cap, dk}, q_unit.options()) : torch::Tensor();
      p.dvalues = want_values[b] ? torch::zeros({cap, dv}, q_unit.options()) : torch::Tensor();
      KVT_CUDA_CHECK(kernels::topk_attention_backward_rows_cuda(
          q_unit.data_ptr<float>(), dout.data_ptr<float>(), fwd.probs.data_ptr<float>(),
          r.g.data_ptr<float>(), fwd.ids.data_ptr<int64_t>(), R, k, dk, dv, offset, n,
          static_cast<float>(scale), slot, p.touched.data_ptr<int64_t>(),
          counts.data_ptr<int64_t>() + b, want_keys[b] ? p.dkeys.data_ptr<float>() : nullptr,
          want_values[b] ? p.dvalues.data_ptr<float>() : nullptr, current_stream()));
    }
    offset += n;
  }
  bool any_asked = false;
  for (const auto& p : pending) any_asked = any_asked || p.asked;
  const auto host_counts = any_asked ? counts.cpu() : counts;  // synchronizes once
  for (size_t b = 0; b < banks.size(); ++b) {
    BankRowGradients rows;
    const Pending& p = pending[b];
    if (p.asked) {
      const int64_t U = host_counts[static_cast<int64_t>(b)].item<int64_t>();
      // Rows come in claim order: sort them (and their gradients) for a coalesced COO tensor.
      const auto sorted = torch::sort(p.touched.narrow(0, 0, U));
      const auto& order = std::get<1>(sorted);
      rows.rows = std::get<0>(sorted);
      if (p.dkeys.defined()) rows.dkeys = p.dkeys.narrow(0, 0, U).index_select(0, order);
      if (p.dvalues.defined()) rows.dvalues = p.dvalues.narrow(0, 0, U).index_select(0, order);
    }
    r.rows.push_back(rows);
  }
  return r;
}

GumbelSamples lazy_gumbel_sample(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                 const torch::Tensor& top_ids, const torch::Tensor& top_scores,
                                 int64_t samples, double scale, uint64_t seed) {
  const auto dtype = check_banks(q_unit, banks);
  check_cuda_tensor(top_ids, "top ids", torch::kInt64, 2);
  check_cuda_tensor(top_scores, "top scores", torch::kFloat32, 2);
  check_k(top_ids.size(1));
  KVT_CHECK(top_ids.size(0) == q_unit.size(0) && top_scores.sizes() == top_ids.sizes(),
            "top ids and scores must be [R, k] for R query rows");
  KVT_CHECK(samples >= 0, "samples must be >= 0, got ", samples);
  const c10::cuda::CUDAGuard guard(q_unit.device());
  const int64_t R = q_unit.size(0);
  auto i64 = q_unit.options().dtype(torch::kInt64);
  GumbelSamples r{torch::empty({R, samples}, i64), torch::empty({R}, i64)};
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const auto ptrs = bank_pointers<T>(banks);
    KVT_CUDA_CHECK(kernels::lazy_gumbel_sample_cuda<T>(
        q_unit.data_ptr<float>(), R, q_unit.size(1), ptrs.data(), static_cast<int>(ptrs.size()),
        top_ids.data_ptr<int64_t>(), top_scores.data_ptr<float>(), top_ids.size(1),
        static_cast<float>(scale), samples, seed, r.ids.data_ptr<int64_t>(),
        r.tail_scored.data_ptr<int64_t>(), current_stream()));
  };
  if (dtype == torch::kFloat32)
    launch(float{});
  else
    launch(__nv_bfloat16{});
  return r;
}

void sparse_row_adam_step(torch::Tensor& param, torch::Tensor& m, torch::Tensor& v,
                          torch::Tensor& steps, const torch::Tensor& rows,
                          const torch::Tensor& grad, double lr, double beta1, double beta2,
                          double eps) {
  check_cuda_tensor(param, "parameter", torch::kFloat32, 2);
  check_cuda_tensor(m, "Adam m", torch::kFloat32, 2);
  check_cuda_tensor(v, "Adam v", torch::kFloat32, 2);
  check_cuda_tensor(steps, "Adam steps", torch::kInt64, 1);
  check_cuda_tensor(rows, "rows", torch::kInt64, 1);
  check_cuda_tensor(grad, "row gradients", torch::kFloat32, 2);
  KVT_CHECK(
      m.sizes() == param.sizes() && v.sizes() == param.sizes() && steps.size(0) == param.size(0),
      "Adam state must match the parameter's shape");
  KVT_CHECK(grad.size(0) == rows.size(0) && grad.size(1) == param.size(1),
            "row gradients must be [U, d] for U rows");
  const c10::cuda::CUDAGuard guard(param.device());
  KVT_CUDA_CHECK(kernels::sparse_row_adam_cuda(
      param.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), steps.data_ptr<int64_t>(),
      param.size(1), rows.data_ptr<int64_t>(), grad.data_ptr<float>(), rows.size(0), lr, beta1,
      beta2, eps, current_stream()));
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CudaTopkArgs {
  const std::vector<BankView>* banks;
  int64_t k;
  double scale;
};

// Views of the banks with the tensors autograd saw (same storage as args.banks).
std::vector<BankView> views_of(const std::vector<BankView>& banks,
                               const std::vector<torch::Tensor>& tensors) {
  std::vector<BankView> v = banks;
  for (size_t b = 0; b < v.size(); ++b) {
    v[b].keys = tensors[2 * b];
    v[b].values = tensors[2 * b + 1];
  }
  return v;
}

struct CudaTopkFunction : public torch::autograd::Function<CudaTopkFunction> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor q_unit,
                               at::TensorList bank_tensors, const CudaTopkArgs& args) {
    const std::vector<torch::Tensor> tensors(bank_tensors.begin(), bank_tensors.end());
    const auto banks = views_of(*args.banks, tensors);
    const auto q = q_unit.contiguous();
    // One search; the forward reuses its scores (no key is scored twice).
    auto fwd = topk_attention_forward(q, banks, search_topk_cuda(q, banks, args.k, args.scale));
    std::vector<int64_t> grad_mask;
    for (const auto& t : tensors) grad_mask.push_back(t.requires_grad() ? 1 : 0);
    std::vector<torch::Tensor> saved = {q, fwd.ids, fwd.probs, fwd.output};
    saved.insert(saved.end(), tensors.begin(), tensors.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["scale"] = args.scale;
    ctx->saved_data["grad_mask"] = grad_mask;
    ctx->mark_non_differentiable({fwd.ids, fwd.scores});
    return {fwd.output, fwd.ids, fwd.scores};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::vector<torch::Tensor> tensors(saved.begin() + 4, saved.end());
    std::vector<BankView> banks(tensors.size() / 2);
    for (size_t b = 0; b < banks.size(); ++b)
      banks[b] = {tensors[2 * b], tensors[2 * b + 1], nullptr, ""};
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto grad_mask = ctx->saved_data["grad_mask"].toIntVector();
    TopkForward fwd{saved[1], torch::Tensor(), saved[2], saved[3]};
    const auto dout =
        grad_outputs[0].defined() ? grad_outputs[0].contiguous() : torch::zeros_like(fwd.output);
    std::vector<bool> want_keys, want_values;
    for (size_t b = 0; b < banks.size(); ++b) {
      want_keys.push_back(grad_mask[2 * b] != 0);
      want_values.push_back(grad_mask[2 * b + 1] != 0);
    }
    const auto bw =
        topk_attention_backward(saved[0], banks, fwd, dout, scale, want_keys, want_values);
    variable_list grads(1 + tensors.size() + 1);
    grads[0] = bw.dq;
    for (size_t b = 0; b < banks.size(); ++b) {
      const auto& rg = bw.rows[b];
      if (want_keys[b])
        grads[1 + 2 * b] =
            impl::row_gradient(rg.rows, rg.dkeys.to(tensors[2 * b].scalar_type()), tensors[2 * b]);
      if (want_values[b])
        grads[2 + 2 * b] = impl::row_gradient(
            rg.rows, rg.dvalues.to(tensors[2 * b + 1].scalar_type()), tensors[2 * b + 1]);
    }
    return grads;
  }
};

}  // namespace

KnnAttentionResult knn_attention_cuda(const torch::Tensor& q_unit,
                                      const std::vector<BankView>& banks,
                                      const KnnAttentionOptions& options) {
  KVT_CHECK(options.estimator == "topk" && options.backward == "exact",
            "on CUDA kvtune implements estimator 'topk' with backward 'exact' so far, got '",
            options.estimator, "' with '", options.backward,
            "' (run on the CPU, or choose topk/exact)");
  check_banks(q_unit, banks);
  check_k(options.k);
  std::vector<torch::Tensor> tensors;
  for (const auto& b : banks) {
    tensors.push_back(b.keys);
    tensors.push_back(b.values);
  }
  const CudaTopkArgs args{&banks, options.k, options.scale};
  auto outs = CudaTopkFunction::apply(q_unit, at::TensorList(tensors), args);
  return {outs[0], outs[1], outs[2]};
}

}  // namespace kvtune::cuda

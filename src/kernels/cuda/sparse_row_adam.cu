// (f) sparse row-wise Adam: lazy Adam on the touched rows (train/sparse_row_adam.h).
#include "kernels/cuda/common.cuh"

namespace kvtune::kernels {
namespace {

constexpr int kAdamThreads = 128;

// Block per touched row; the row's step count is read and bumped by thread 0.
__global__ void __launch_bounds__(kAdamThreads)
    sparse_row_adam_kernel(float* param, float* m, float* v, int64_t* steps, int64_t d,
                           const int64_t* __restrict__ rows, const float* __restrict__ grad,
                           double lr, double beta1, double beta2, double eps) {
  __shared__ float bc1_s, bc2_s;
  const int64_t u = blockIdx.x;
  const int64_t row = rows[u];
  if (threadIdx.x == 0) {
    const int64_t t = steps[row] + 1;
    steps[row] = t;
    bc1_s = static_cast<float>(1.0 - pow(beta1, static_cast<double>(t)));
    bc2_s = static_cast<float>(1.0 - pow(beta2, static_cast<double>(t)));
  }
  __syncthreads();
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float step = static_cast<float>(lr), e = static_cast<float>(eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const int64_t at = row * d + i;
    const float gi = grad[u * d + i];
    const float mi = b1 * m[at] + (1.f - b1) * gi;
    const float vi = b2 * v[at] + (1.f - b2) * gi * gi;
    m[at] = mi;
    v[at] = vi;
    param[at] -= step * (mi / bc1_s) / (sqrtf(vi / bc2_s) + e);
  }
}

}  // namespace

cudaError_t sparse_row_adam_cuda(float* param, float* m, float* v, int64_t* steps, int64_t d,
                                 const int64_t* rows, const float* grad, int64_t U, double lr,
                                 double beta1, double beta2, double eps, cudaStream_t stream) {
  if (d < 1 || U < 0 || U > INT32_MAX) return cudaErrorInvalidValue;
  if (U == 0) return cudaSuccess;
  sparse_row_adam_kernel<<<static_cast<unsigned>(U), kAdamThreads, 0, stream>>>(
      param, m, v, steps, d, rows, grad, lr, beta1, beta2, eps);
  return cudaGetLastError();
}

}  // namespace kvtune::kernels

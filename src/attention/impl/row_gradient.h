// Sparse row gradients of bank tensors: what "exact" and "sampled" backwards hand to autograd,
// so that an optimizer step touches only the rows that received gradient.
#pragma once

#include <torch/torch.h>

namespace kvtune::impl {

// Sparse COO gradient of a [N, d] bank tensor `like` from `rows` (int64 [U], sorted, distinct)
// and their gradients [U, d].
inline torch::Tensor row_gradient(const torch::Tensor& rows, const torch::Tensor& grads,
                                  const torch::Tensor& like) {
  return torch::sparse_coo_tensor(rows.unsqueeze(0), grads, like.sizes(),
                                  grads.options().layout(torch::kSparse))
      ._coalesced_(true);
}

}  // namespace kvtune::impl

// Argument checks shared by the op and the bank class: a tensor on a device or in a layout the
// CPU kernels cannot read is a ValueError before any kernel touches its memory.
#pragma once

#include <string>

#include <torch/torch.h>

namespace kvtune::python {

// `what` must be a defined, strided tensor on the CPU (or on CUDA when kvtune was built with
// it and `cuda_ok`); `what` names it in the message ("queries", "keys[1]").
void check_readable(const torch::Tensor& t, const std::string& what, bool cuda_ok = false);

}  // namespace kvtune::python

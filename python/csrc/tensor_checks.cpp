#include "tensor_checks.h"

#include "errors.h"

namespace kvtune::python {

void check_readable(const torch::Tensor& t, const std::string& what, bool cuda_ok) {
  check_argument(t.defined(), what, " is not a tensor (got None or an undefined tensor)");
  check_argument(t.layout() == torch::kStrided, what, " is a ", t.layout(),
                 " tensor: pass a dense (strided) tensor, e.g. t.to_dense()");
#ifdef KVTUNE_WITH_CUDA
  const bool device_ok = t.device().is_cpu() || (cuda_ok && t.device().is_cuda());
  check_argument(device_ok, what, " is on device ", t.device(),
                 ": kvtune runs on the CPU (and on CUDA for the attention op, docs/gpu.md): "
                 "move it with .cpu()");
#else
  (void)cuda_ok;
  check_argument(t.device().is_cpu(), what, " is on device ", t.device(),
                 ": this kvtune was built without CUDA and runs on the CPU: move it with .cpu()");
#endif
}

}  // namespace kvtune::python

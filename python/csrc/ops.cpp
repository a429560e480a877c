// torch.ops.kvtune.knn_attention: the library's kNN attention op (attention/knn_attention.h)
// registered with TORCH_LIBRARY. The kernel is CompositeImplicitAutograd: it runs above the
// autograd key, so the op's own autograd Functions (the topk backward with its sparse row
// gradients, the sampled backward, dense autograd) record the graph as they do in C++.
#include <torch/library.h>

#include "attention/estimator.h"
#include "attention/knn_attention.h"
#include "bank_class.h"
#include "errors.h"
#include "model/model_io.h"
#include "tensor_checks.h"

namespace kvtune::python {
namespace {

using BankList = std::vector<c10::optional<c10::intrusive_ptr<BankHolder>>>;

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> knn_attention_op(
    const torch::Tensor& queries, const std::vector<torch::Tensor>& keys,
    const std::vector<torch::Tensor>& values, int64_t k, const std::string& estimator,
    const std::string& backward, double scale, int64_t samples, int64_t groups,
    int64_t tail_samples, int64_t backward_samples, int64_t seed,
    const c10::optional<torch::Tensor>& learned_scale, const c10::optional<BankList>& banks,
    const c10::optional<std::vector<std::string>>& names) {
  check_readable(queries, "queries", /*cuda_ok=*/true);
  check_argument(queries.dim() >= 1 && queries.size(-1) >= 1, "queries ", queries.sizes(),
                 " must be [..., d_k] with d_k >= 1");
  check_argument(!keys.empty(), "keys is an empty list: give one key tensor per bank");
  check_argument(keys.size() == values.size(), "keys has ", keys.size(), " tensors but values has ",
                 values.size(), ": give one key and one value tensor per bank");
  check_argument(k >= 1, "k is ", k, ", expected k >= 1 (k larger than every key is allowed: ",
                 "the missing results have id -1)");
  check_argument(samples >= 1 && groups >= 1 && groups <= samples, "samples (", samples,
                 ") and groups (", groups, ") must satisfy 1 <= groups <= samples");
  check_argument(tail_samples >= 0, "tail_samples is ", tail_samples, ", expected >= 0");
  check_argument(seed >= 0, "seed is ", seed, ", expected >= 0");
  if (banks)
    check_argument(banks->size() == keys.size(), "banks has ", banks->size(),
                   " entries but keys has ", keys.size(), ": one per bank (None: no index)");
  if (names)
    check_argument(names->size() == keys.size(), "names has ", names->size(),
                   " entries but keys has ", keys.size());
  if (learned_scale) check_readable(*learned_scale, "learned_scale");

  std::vector<BankView> views(keys.size());
  for (size_t b = 0; b < keys.size(); ++b) {
    const std::string tag = "[" + std::to_string(b) + "]";
    check_readable(keys[b], "keys" + tag, /*cuda_ok=*/true);
    check_readable(values[b], "values" + tag, /*cuda_ok=*/true);
    views[b].keys = keys[b];
    views[b].values = values[b];
    if (names) views[b].name = (*names)[b];
    if (banks && (*banks)[b]) {
      const auto& holder = *(*banks)[b];
      const auto& own = holder->keys();
      // The index (a Flat one borrows this very buffer) searches the bank's own keys: the keys
      // given must be that memory, e.g. bank.keys or a Parameter made from it.
      check_argument(keys[b].defined() && keys[b].data_ptr() == own.data_ptr() &&
                         keys[b].sizes() == own.sizes() &&
                         keys[b].scalar_type() == own.scalar_type(),
                     "keys", tag, " is not the memory of bank '", holder->meta().name,
                     "' whose index searches it: pass bank.keys (or a Parameter made from it), ",
                     "and do not replace it or convert it (.double(), .to()) after creating it");
      views[b].index = &holder->bank()->index();
      if (!names) views[b].name = holder->meta().name;
    }
  }

  KnnAttentionOptions options;
  options.k = k;
  options.estimator = estimator;
  options.backward = backward;
  options.scale = scale;
  options.samples = samples;
  options.groups = groups;
  options.tail_samples = tail_samples;
  options.backward_samples = backward_samples;
  options.seed = static_cast<uint64_t>(seed);
  // Every kvtune::Error of the op is about its arguments (shapes, dtypes, names, options).
  auto r = as_value_error([&] {
    make_estimator(options.estimator);
    if (!queries.is_cuda()) check_attention_inputs(queries, views, options);
    return knn_attention(queries, views, options, learned_scale ? *learned_scale : torch::Tensor());
  });
  return {r.output, r.ids, r.scores};
}

// The fingerprint of a kvtune model folder (model/model_io.h): what a bank made for that model
// records (Bank.set_model) so that `kvtune eval --banks` attaches it. The folder is loaded and
// validated as the CLI does; a bad one is a RuntimeError naming the file.
std::string model_fingerprint_op(const std::string& model_dir) {
  return model_fingerprint(load_model(model_dir).model);
}

}  // namespace
}  // namespace kvtune::python

TORCH_LIBRARY(kvtune, m) {
  kvtune::python::register_bank_class(m);
  m.def(
      "knn_attention(Tensor queries, Tensor[] keys, Tensor[] values, int k, "
      "str estimator=\"topk\", str backward=\"exact\", float scale=0.0, int samples=128, "
      "int groups=4, int tail_samples=64, int backward_samples=32, int seed=0, "
      "Tensor? learned_scale=None, __torch__.torch.classes.kvtune.Bank?[]? banks=None, "
      "str[]? names=None) -> (Tensor output, Tensor ids, Tensor scores)",
      TORCH_FN(kvtune::python::knn_attention_op));
  m.def("model_fingerprint(str model_dir) -> str", TORCH_FN(kvtune::python::model_fingerprint_op));
}

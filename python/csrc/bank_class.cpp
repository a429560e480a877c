#include "bank_class.h"

#include <filesystem>

#include "bank/bank_io.h"
#include "errors.h"
#include "tensor_checks.h"

namespace kvtune::python {
namespace {

IndexConfig index_config(const std::string& factory) {
  check_argument(!factory.empty(),
                 "index must be a faiss factory string (Flat, IVF256,Flat, HNSW32, ...), got \"\"");
  IndexConfig config;
  config.factory = factory;
  return config;
}

}  // namespace

c10::intrusive_ptr<BankHolder> BankHolder::create(int64_t n, int64_t key_dim, int64_t value_dim,
                                                  int64_t seed, const std::string& index,
                                                  const std::string& name, bool trainable,
                                                  double value_std) {
  check_argument(n >= 1, "Bank.create: n is ", n, ", expected >= 1 slots");
  check_argument(seed >= 0, "Bank.create: seed is ", seed, ", expected >= 0");
  check_argument(!name.empty(), "Bank.create: name must not be empty");
  const auto config = index_config(index);
  return as_value_error([&] {
    auto bank = std::make_shared<IndexedBank>(
        make_random_bank(name, n, key_dim, value_dim, static_cast<uint64_t>(seed), trainable,
                         value_std),
        config);
    bank->mutable_bank().meta.provenance =
        "{\"created_by\": \"kvtune.Bank.create\", \"seed\": " + std::to_string(seed) + "}";
    return c10::make_intrusive<BankHolder>(std::move(bank));
  });
}

c10::intrusive_ptr<BankHolder> BankHolder::load(const std::string& path, int64_t nprobe,
                                                int64_t ef_search) {
  check_argument(!path.empty(), "Bank.load: the path is empty");
  check_argument(nprobe >= 0 && ef_search >= 0, "Bank.load: nprobe (", nprobe, ") and ef_search (",
                 ef_search, ") must be >= 0 (0 keeps faiss's default)");
  IndexConfig params;
  params.nprobe = static_cast<int>(nprobe);
  params.ef_search = static_cast<int>(ef_search);
  // A bad file is a RuntimeError carrying read_bank's message (kvtune::Error is a
  // std::runtime_error).
  return c10::make_intrusive<BankHolder>(IndexedBank::load(path, params));
}

c10::intrusive_ptr<BankHolder> BankHolder::from_tensors(
    const torch::Tensor& keys, const torch::Tensor& values,
    const c10::optional<torch::Tensor>& slot_ids, const c10::optional<torch::Tensor>& usage,
    const std::string& name, const std::string& index, bool trainable) {
  check_readable(keys, "keys");
  check_readable(values, "values");
  check_argument(!name.empty(), "Bank.from_tensors: name must not be empty");
  check_argument(keys.dim() == 2 && values.dim() == 2, "Bank.from_tensors: keys ", keys.sizes(),
                 " and values ", values.sizes(), " must be 2-D [N, d]");
  check_argument(keys.size(0) >= 1, "Bank.from_tensors: the bank has no rows");
  check_argument(keys.scalar_type() == torch::kFloat32 && values.scalar_type() == torch::kFloat32,
                 "Bank.from_tensors: keys (", keys.scalar_type(), ") and values (",
                 values.scalar_type(), ") must be float32 (banks are stored as float32)");
  const int64_t n = keys.size(0);
  Bank bank;
  // Shares memory with the tensors given when they are contiguous.
  bank.keys = keys.detach().contiguous();
  bank.values = values.detach().contiguous();
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  if (slot_ids) {
    check_readable(*slot_ids, "slot_ids");
    bank.slot_ids = slot_ids->detach().contiguous();
  } else {
    bank.slot_ids = torch::arange(n, i64);
  }
  if (usage) {
    check_readable(*usage, "usage");
    bank.usage = usage->detach().contiguous();
  } else {
    bank.usage = torch::zeros({n}, i64);
  }
  bank.meta.name = name;
  bank.meta.trainable = trainable;
  bank.meta.key_dim = keys.size(1);
  bank.meta.value_dim = values.size(1);
  bank.meta.provenance = "{\"created_by\": \"kvtune.Bank.from_tensors\"}";
  const auto config = index_config(index);
  return as_value_error([&] {
    validate_bank(bank, "bank '" + name + "'");
    return c10::make_intrusive<BankHolder>(std::make_shared<IndexedBank>(std::move(bank), config));
  });
}

void BankHolder::save(const std::string& path) const {
  check_argument(!path.empty(), "Bank.save: the path is empty");
  // The bank may have been changed in place from Python: validate_bank (inside write_bank)
  // refuses, for example, keys an optimizer moved off unit norm (call after_update first).
  bank_->save(path);
}

std::tuple<torch::Tensor, torch::Tensor> BankHolder::search(const torch::Tensor& queries,
                                                            int64_t k) const {
  check_readable(queries, "queries");
  const int64_t dk = bank_->bank().meta.key_dim;
  check_argument(queries.dim() >= 1 && queries.size(-1) == dk, "Bank.search: queries ",
                 queries.sizes(), " must be [..., ", dk, "] (the bank's key_dim)");
  check_argument(queries.is_floating_point(), "Bank.search: queries must be floating point, got ",
                 queries.scalar_type());
  check_argument(k >= 1 && k <= size(), "Bank.search: k is ", k, ", expected 1 <= k <= ", size(),
                 " (the bank's slots)");
  torch::NoGradGuard no_grad;
  const auto lead = queries.sizes().slice(0, queries.dim() - 1).vec();
  auto q = queries.detach().reshape({-1, dk}).to(torch::kFloat32);
  q = (q / q.norm(2, 1, true).clamp_min(1e-12)).contiguous();
  const int64_t m = q.size(0);
  auto scores = torch::empty({m, k}, torch::kFloat32);
  auto ids = torch::empty({m, k}, torch::kInt64);
  if (m > 0)
    bank_->index().search(q.data_ptr<float>(), m, k, scores.data_ptr<float>(),
                          ids.data_ptr<int64_t>());
  auto shape = lead;
  shape.push_back(k);
  return {scores.reshape(shape), ids.reshape(shape)};
}

void BankHolder::after_update(const torch::Tensor& rows) {
  check_readable(rows, "rows");
  check_argument(rows.scalar_type() == torch::kInt64, "after_update: rows must be int64, got ",
                 rows.scalar_type());
  const auto flat = rows.reshape({-1});
  if (flat.numel() > 0)
    check_argument(flat.min().item<int64_t>() >= 0 && flat.max().item<int64_t>() < size(),
                   "after_update: rows must be in [0, ", size(), ")");
  bank_->after_update(flat);
}

void BankHolder::record_usage(const torch::Tensor& rows) {
  check_readable(rows, "rows");
  check_argument(rows.scalar_type() == torch::kInt64, "record_usage: rows must be int64, got ",
                 rows.scalar_type());
  const auto flat = rows.reshape({-1});
  if (flat.numel() > 0)
    check_argument(flat.min().item<int64_t>() >= -1 && flat.max().item<int64_t>() < size(),
                   "record_usage: rows must be in [-1, ", size(), ") (-1: no result)");
  bank_->record_usage(flat);
}

void register_bank_class(torch::Library& m) {
  using Self = c10::intrusive_ptr<BankHolder>;
  m.class_<BankHolder>("Bank")
      .def_static("create", &BankHolder::create)
      .def_static("load", &BankHolder::load)
      .def_static("from_tensors", &BankHolder::from_tensors)
      .def("save", [](const Self& s, const std::string& path) { s->save(path); })
      .def("keys", [](const Self& s) { return s->keys(); })
      .def("values", [](const Self& s) { return s->values(); })
      .def("slot_ids", [](const Self& s) { return s->slot_ids(); })
      .def("usage", [](const Self& s) { return s->usage(); })
      .def("search",
           [](const Self& s, const torch::Tensor& q, int64_t k) { return s->search(q, k); })
      .def("after_update", [](const Self& s, const torch::Tensor& rows) { s->after_update(rows); })
      .def("rebuild_index", [](const Self& s) { s->rebuild_index(); })
      .def("record_usage", [](const Self& s, const torch::Tensor& rows) { s->record_usage(rows); })
      .def("size", [](const Self& s) { return s->size(); })
      .def("key_dim", [](const Self& s) { return s->meta().key_dim; })
      .def("value_dim", [](const Self& s) { return s->meta().value_dim; })
      .def("name", [](const Self& s) { return s->meta().name; })
      .def("set_name",
           [](const Self& s, const std::string& name) {
             check_argument(!name.empty(), "a bank name must not be empty");
             s->mutable_meta().name = name;
           })
      .def("trainable", [](const Self& s) { return s->meta().trainable; })
      .def("set_trainable", [](const Self& s, bool on) { s->set_trainable(on); })
      .def("score_scale", [](const Self& s) { return s->meta().score_scale; })
      .def("set_score_scale",
           [](const Self& s, double scale) {
             check_argument(std::isfinite(scale) && scale >= 0, "score_scale is ", scale,
                            ", expected a finite value >= 0 (0 means sqrt(key_dim))");
             s->mutable_meta().score_scale = scale;
           })
      .def("effective_scale", [](const Self& s) { return s->effective_scale(); })
      .def("provenance", [](const Self& s) { return s->meta().provenance; })
      .def("set_provenance",
           [](const Self& s, const std::string& text) { s->mutable_meta().provenance = text; })
      .def("index_factory", [](const Self& s) { return s->index_factory(); })
      .def("model_fingerprint", [](const Self& s) { return s->meta().model_fingerprint; })
      .def("memory_layer", [](const Self& s) { return s->meta().memory_layer; })
      .def("set_model",
           [](const Self& s, const std::string& fingerprint, int64_t layer) {
             check_argument(layer >= -1, "memory_layer is ", layer,
                            ", expected >= 0 (or -1: none)");
             s->mutable_meta().model_fingerprint = fingerprint;
             s->mutable_meta().memory_layer = layer;
           })
      .def("format_version",
           [](const Self& s) { return static_cast<int64_t>(s->meta().format_version); });
}

}  // namespace kvtune::python

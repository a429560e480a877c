#include "train/domain_bank_init.h"

#include <nlohmann/json.hpp>

#include "bank/bank_io.h"
#include "common/check.h"
#include "train/kmeans.h"
#include "train/run_model.h"

namespace kvtune {

std::optional<Bank> read_init_bank(const Recipe& r, TransformerLM& model) {
  const std::string& init = r.domain_bank.init;
  if (init.empty()) return std::nullopt;
  const auto layers = model->memory_layers();
  KVT_CHECK(layers.size() == 1, "domain_bank.init: the model has ", layers.size(),
            " memory layers; a bank file starts one: remove domain_bank.init");
  Bank bank = read_bank(init);
  check_bank_fits_model(model, bank.meta, init);
  KVT_CHECK(bank.meta.memory_layer == 0, "domain_bank.init: '", init,
            "' is a bank of memory layer ", bank.meta.memory_layer, ", not of layer 0");
  return bank;
}

torch::Tensor domain_keys(const Recipe& r, TransformerLM& model, MemoryLayer& layer,
                          const LmDataset& data, uint64_t seed) {
  const auto& db = r.domain_bank;
  const int64_t dk = layer->options().key_dim;
  if (db.key_init == "random") {
    return make_random_bank("init", db.size, dk, 1, seed, false).keys;
  }
  // Collect queries from a few domain batches.
  std::vector<torch::Tensor> chunks;
  int64_t have = 0;
  const int64_t want = db.size * 40;  // faiss asks for >= 39 points per centroid
  layer->set_capture_queries(true);
  {
    torch::NoGradGuard no_grad;
    model->eval();
    for (int64_t b = 0; have < want && b < 200; ++b) {
      const auto batch = data.train_batch(r.train.batch_size, seed + 7, b);
      model->forward(batch.narrow(1, 0, batch.size(1) - 1));
      chunks.push_back(layer->last_queries().reshape({-1, dk}).contiguous());
      have += chunks.back().size(0);
    }
    model->train();
  }
  layer->set_capture_queries(false);
  auto q = torch::cat(chunks).contiguous();
  KVT_CHECK(q.size(0) >= db.size, "domain corpus gives only ", q.size(0),
            " query vectors for a domain bank of ", db.size,
            " slots: lower domain_bank.size or use a larger corpus");
  if (db.key_init == "sample") {
    const auto pick = torch::randperm(q.size(0), torch::kInt64).narrow(0, 0, db.size);
    return q.index_select(0, pick).contiguous();
  }
  return spherical_kmeans(q, db.size, seed);
}

Bank make_domain_bank(const Recipe& r, TransformerLM& model, MemoryLayer& layer, int64_t index,
                      const LmDataset& domain_train, std::optional<Bank> init,
                      const std::string& fingerprint) {
  const std::string name = "domain_" + std::to_string(index);
  Bank bank;
  if (init) {
    // The file's rows train on; slot ids, usage and (merged banks) origins are kept, so a
    // tuned merged bank still says where each slot came from.
    bank = std::move(*init);
    bank.meta.name = name;
    bank.meta.trainable = true;
  } else {
    bank = make_random_bank(name, r.domain_bank.size, layer->options().key_dim,
                            layer->options().value_dim, r.train.seed + 101 + index,
                            /*trainable=*/true);
    bank.keys = domain_keys(r, model, layer, domain_train, r.train.seed + index);
    if (r.domain_bank.value_init == "zero") bank.values.zero_();
  }
  bank.meta.score_scale = layer->banks().front()->bank().meta.score_scale;
  bank.meta.model_fingerprint = fingerprint;
  bank.meta.memory_layer = index;
  const std::string& file = r.domain_bank.init;
  bank.meta.provenance =
      nlohmann::json{{"recipe", r.name},
                     {"domain", r.data.domain},
                     {"domain_mix", r.data.domain_mix},
                     {"key_init", file.empty() ? r.domain_bank.key_init : "init: " + file}}
          .dump();
  return bank;
}

}  // namespace kvtune

// Method memory: a new trainable domain bank per memory layer, in its own index, searched with
// the frozen base bank (and any attached banks); its rows train with sparse row Adam, the query
// projections with AdamW (unless domain_bank.train_query is false). The banks are saved beside
// the model folder as domain_<i>.h5; attached banks (domain_bank.attach) are not the run's.
#include <algorithm>
#include <filesystem>
#include <optional>

#include "common/check.h"
#include "common/resources.h"
#include "index/index_config_yaml.h"
#include "model/model_io.h"
#include "train/domain_bank_init.h"
#include "train/impl/methods.h"
#include "train/impl/recipe_checks.h"
#include "train/run_model.h"

namespace kvtune::impl {

namespace {

namespace fs = std::filesystem;

class MemoryMethod : public Method {
 public:
  std::string name() const override { return "memory"; }
  bool trains_bank_rows() const override { return true; }

  void validate(const Recipe& r, const std::string& where) const override {
    const DomainBankConfig& b = r.domain_bank;
    const MemoryConfig& m = r.model_config.memory;
    check_positive(where, "domain_bank.size", b.size);
    // Keys and values, their gradients and two Adam moments: 4 floats per element.
    check_fits_in_memory(checked_mul(checked_mul(b.size, m.key_dim + m.value_dim), 16),
                         where + ": key 'domain_bank.size' = " + std::to_string(b.size) +
                             " (keys, values, "
                             "their gradients and Adam state, dims " +
                             std::to_string(m.key_dim) + " + " + std::to_string(m.value_dim) + ")",
                         "lower domain_bank.size");
    KVT_CHECK(b.size >= m.attention.k, where, ": key 'domain_bank.size' is ", b.size,
              ", fewer slots than the model's memory.k = ", m.attention.k,
              " keys retrieved per query: use at least ", m.attention.k, " slots");
    KVT_CHECK(b.key_dim == 0 || b.key_dim == m.key_dim, where, ": key 'domain_bank.key_dim' is ",
              b.key_dim, " but model '", r.model_config.name, "' has memory.key_dim ", m.key_dim,
              ": remove domain_bank.key_dim (it defaults to the model's) or set it to ", m.key_dim);
    KVT_CHECK(
        b.value_dim == 0 || b.value_dim == m.value_dim, where, ": key 'domain_bank.value_dim' is ",
        b.value_dim, " but model '", r.model_config.name, "' has memory.value_dim ", m.value_dim,
        ": remove domain_bank.value_dim (it defaults to the model's) or set it to ", m.value_dim);
    check_one_of(where, "domain_bank.key_init", b.key_init, {"kmeans", "random", "sample"});
    check_one_of(where, "domain_bank.value_init", b.value_init, {"zero", "random"});
    kvtune::validate(b.index, where, "domain_bank.index");
    if (!b.init.empty()) check_bank_file(where, "domain_bank.init", b.init);
    for (const auto& path : b.attach) check_bank_file(where, "domain_bank.attach", path);
  }

  void load_inputs(const Recipe& r, TransformerLM& model, const std::string&) override {
    // Banks of earlier domains, frozen, in place before anything is measured (recipe.h).
    for (const auto& path : r.domain_bank.attach)
      attached_.push_back(attach_bank_file(model, path));
    init_bank_ = read_init_bank(r, model);
  }

  void prepare(MethodSetup& setup) override {
    const Recipe& r = setup.recipe;
    TrainState& s = setup.state;
    auto layers = s.model->memory_layers();
    for (size_t i = 0; i < layers.size(); ++i) {
      auto& layer = layers[i];
      Bank bank = make_domain_bank(r, s.model, layer, static_cast<int64_t>(i), setup.domain_train,
                                   std::move(init_bank_), setup.fingerprint);
      init_bank_.reset();
      auto indexed = std::make_shared<IndexedBank>(std::move(bank), r.domain_bank.index);
      indexed->set_trainable(true);
      layer->attach(indexed);
      if (r.domain_bank.train_query) {
        layer->query->weight.set_requires_grad(true);
        s.dense.push_back(layer->query->weight);
      }
      s.banks.push_back(indexed);
      s.bank_params.push_back(indexed->bank().keys);
      s.bank_params.push_back(indexed->bank().values);
    }
  }

  // The domain banks are saved beside the model folder's base banks, not inside model.pt.
  void save(TrainState& s, const ModelConfig& config, const Tokenizer& tokenizer,
            const std::string& model_dir) override {
    auto is_attached = [&](const std::shared_ptr<IndexedBank>& b) {
      return std::find(attached_.begin(), attached_.end(), b) != attached_.end();
    };
    auto layers = s.model->memory_layers();
    std::vector<std::vector<std::shared_ptr<IndexedBank>>> all(layers.size());
    std::vector<std::shared_ptr<IndexedBank>> own(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      all[i] = layers[i]->banks();
      for (auto it = all[i].begin() + 1; it != all[i].end(); ++it) {
        if (is_attached(*it)) continue;
        KVT_CHECK(own[i] == nullptr, "internal: several trained domain banks on memory layer ", i,
                  "; one file per layer is saved");
        own[i] = *it;
      }
      layers[i]->detach_all();
      layers[i]->attach(all[i].front());
    }
    save_model(model_dir, s.model, config, tokenizer);
    for (size_t i = 0; i < layers.size(); ++i) {
      if (own[i]) own[i]->save((fs::path(model_dir) / domain_bank_file(i)).string());
      layers[i]->detach_all();
      for (const auto& b : all[i]) layers[i]->attach(b);
    }
  }

 private:
  std::vector<std::shared_ptr<IndexedBank>> attached_;
  std::optional<Bank> init_bank_;
};

}  // namespace

std::unique_ptr<Method> make_memory_method() {
  return std::make_unique<MemoryMethod>();
}

}  // namespace kvtune::impl

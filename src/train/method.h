// A fine-tuning method (recipe key `method`): what trains, how its rows are optimized, what is
// saved beside the model folder and what the report adds. One implementation per method in
// train/impl/, built by name by make_method (faiss's index_factory, marian's model_factory):
//   memory  a new trainable domain bank per memory layer (+ the query projections)
//   sparse  a few of the base bank's own slots: the top-t by TF-IDF each step (a patch)
//   full    every transformer weight
//   lora    low-rank adapters on the linears, merged into the weights at the end
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/lm_dataset.h"
#include "model/model_config.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "train/recipe.h"
#include "train/train_state.h"

namespace kvtune {

// What a method sees of the run while it sets up what trains.
struct MethodSetup {
  const Recipe& recipe;
  TrainState& state;
  const LmDataset& domain_train;  // the domain's training side (k-means keys of a new bank)
  std::string fingerprint;        // the base model's (model_io.h model_fingerprint)
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  // Whether the method trains bank rows (then optim.bank_lr must be > 0).
  virtual bool trains_bank_rows() const = 0;
  // Checks of the recipe keys only this method reads; every message names the key and the fix.
  virtual void validate(const Recipe& r, const std::string& where) const {}
  // Reads and checks the files the run needs, and attaches what must be in place before the
  // "before" evaluation, so that a bad file fails before any work (the base model is loaded).
  virtual void load_inputs(const Recipe& r, TransformerLM& model, const std::string& base_dir) {}
  // Marks what trains (requires_grad) and fills state.dense, .banks, .bank_params and, when
  // the method filters gradients, .after_backward.
  virtual void prepare(MethodSetup& setup) = 0;
  // After training, in place: what inference needs (lora merges its adapters). Every rank calls
  // it, so it may run collectives (method sparse gathers the rows of split banks); save then
  // runs on rank 0 alone.
  virtual void finish(TrainState& s) {}
  // Writes the model folder and this method's own files beside it (default: save_model).
  virtual void save(TrainState& s, const ModelConfig& config, const Tokenizer& tokenizer,
                    const std::string& model_dir);
  // Fields this method adds to report.json.
  virtual nlohmann::json report() const { return nlohmann::json::object(); }
};

// Throws a kvtune::Error listing method_names() for an unknown name.
std::unique_ptr<Method> make_method(const std::string& name);
// Every method, in table order (compare, docs): memory, sparse, full, lora.
const std::vector<std::string>& method_names();

}  // namespace kvtune

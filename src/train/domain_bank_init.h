// Where a new domain bank starts (recipe keys domain_bank.*): keys at spherical k-means
// centroids of the queries the frozen model makes on domain text (or random keys, or sampled
// queries), zero or random values; or the rows of a bank file (domain_bank.init).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "bank/bank.h"
#include "data/lm_dataset.h"
#include "model/memory_layer.h"
#include "model/transformer.h"
#include "train/recipe.h"

namespace kvtune {

// domain_bank.init read and checked against the model (fingerprint, one memory layer, layer 0);
// nullopt when the recipe names no file.
std::optional<Bank> read_init_bank(const Recipe& r, TransformerLM& model);

// Keys [domain_bank.size, key_dim] for the new bank of `layer` per domain_bank.key_init.
torch::Tensor domain_keys(const Recipe& r, TransformerLM& model, MemoryLayer& layer,
                          const LmDataset& data, uint64_t seed);

// The new trainable domain bank of memory layer `index` (named "domain_<index>"), carrying the
// base bank's score scale, the model's fingerprint, its layer and the run's provenance. From
// `init` when given (its slot ids, usage and origins kept), else per domain_bank.size /
// key_init / value_init.
Bank make_domain_bank(const Recipe& r, TransformerLM& model, MemoryLayer& layer, int64_t index,
                      const LmDataset& domain_train, std::optional<Bank> init,
                      const std::string& fingerprint);

}  // namespace kvtune

// A trained run's model: the model folder plus the domain banks fine-tuning wrote beside it, and
// bank files attached to a model by hand (`kvtune eval --banks`).
#pragma once

#include <memory>
#include <string>

#include "bank/indexed_bank.h"
#include "model/model_io.h"

namespace kvtune {

// "domain_<i>.h5" in a model folder: the trained domain bank of memory layer i.
std::string domain_bank_file(int64_t memory_layer);

// Throws a kvtune::Error naming `path` when a bank with `meta` cannot serve `model`: it records
// no model fingerprint, was trained for another model (fingerprint differs), or names a memory
// layer the model does not have.
void check_bank_fits_model(const TransformerLM& model, const BankMeta& meta,
                           const std::string& path);

// Loads the bank at `path` (and its index beside it) read-only and attaches it to the memory
// layer its meta names. Refused with a kvtune::Error naming the file, and nothing attached, when
// the bank has no model fingerprint, was trained for another model (fingerprint differs), or names
// a memory layer the model does not have.
std::shared_ptr<IndexedBank> attach_bank_file(TransformerLM& model, const std::string& path);

// load_model(dir), then every domain bank found beside it attached after the base bank.
LoadedModel load_run_model(const std::string& model_dir);

}  // namespace kvtune

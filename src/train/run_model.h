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
// "patch_<i>.h5" in a model folder: method sparse's patch of the base bank of memory layer i.
std::string patch_bank_file(int64_t memory_layer);

// Throws a kvtune::Error naming `path` when a bank with `meta` cannot serve `model`: it records
// no model fingerprint, was trained for another model (fingerprint differs), or names a memory
// layer the model does not have.
void check_bank_fits_model(const TransformerLM& model, const BankMeta& meta,
                           const std::string& path);

// Loads the bank at `path` (and its index beside it) read-only and attaches it to the memory
// layer its meta names; a patch (bank/bank_patch.h) is applied to that layer's base bank
// instead, which is returned. Refused with a kvtune::Error naming the file, and nothing attached,
// when the bank has no model fingerprint, was trained for another model (fingerprint differs), or
// names a memory layer the model does not have.
std::shared_ptr<IndexedBank> attach_bank_file(TransformerLM& model, const std::string& path);

// load_model(dir), then every patch found beside it applied and every domain bank attached
// after the base bank.
LoadedModel load_run_model(const std::string& model_dir);

// The bank of memory layer `layer` of the model folder `model_dir` (`loaded` = load_model of it),
// read with its index, carrying the model's fingerprint and memory layer: what
// `kvtune bank export` writes. `which` is "domain" (domain_<layer>.h5, written by fine-tuning) or
// "base" (bank_<layer>.h5: the model's own base bank object is returned). A domain bank that
// records another fingerprint or layer is refused (copied from another run); one that records
// none (written before kvtune recorded fingerprints) gets the folder's, and `*stamped` is set.
std::shared_ptr<IndexedBank> load_run_bank(const LoadedModel& loaded, const std::string& model_dir,
                                           int64_t layer, const std::string& which,
                                           bool* stamped = nullptr);

}  // namespace kvtune

// validate_recipe: everything a run needs, checked before any work starts (marian's
// config_validator). Each mode checks what it uses; every message names the key and the fix.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "attention/estimator.h"
#include "common/check.h"
#include "index/index_config_yaml.h"
#include "model/model_config_yaml.h"
#include "train/corpus.h"
#include "train/recipe_io.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

void check_one_of(const std::string& where, const std::string& key, const std::string& value,
                  const std::vector<std::string>& names) {
  KVT_CHECK(std::find(names.begin(), names.end(), value) != names.end(), where, ": key '", key,
            "' is '", value, "', expected one of: ", join(names));
}

template <typename T>
void check_positive(const std::string& where, const std::string& key, T value) {
  KVT_CHECK(value > 0, where, ": key '", key, "' must be > 0, got ", value);
}

template <typename T>
void check_non_negative(const std::string& where, const std::string& key, T value,
                        const char* zero_means) {
  KVT_CHECK(value >= 0, where, ": key '", key, "' must be >= 0 (0 = ", zero_means, "), got ",
            value);
}

// What finetune loads from a pretrained run folder (the trainer's load_model(base/model)).
constexpr const char* kBaseModelConfig = "model/config.yaml";

void check_base(const Recipe& r, const std::string& where) {
  KVT_CHECK(!r.base.empty(), where,
            ": key 'base' is required for finetune: the pretrained run folder, e.g. base: "
            "runs/pretrain-general (made by `kvtune pretrain recipes/pretrain-general.yaml`)");
  KVT_CHECK(fs::is_regular_file(fs::path(r.base) / kBaseModelConfig), where, ": base '", r.base,
            "' is not a pretrained run folder (", kBaseModelConfig,
            " missing): run `kvtune pretrain recipes/pretrain-general.yaml` first");
}

void check_data(const Recipe& r, const std::string& where) {
  const DataConfig& d = r.data;
  if (r.mode == "pretrain") {
    KVT_CHECK(!d.general.empty(), where,
              ": key 'data.general' is empty: pretraining needs at least one corpus, e.g. [wn]");
    KVT_CHECK(d.domain.empty(), where, ": key 'data.domain' is for finetune recipes; remove it",
              " or set mode: finetune");
  } else {
    KVT_CHECK(!d.domain.empty(), where,
              ": key 'data.domain' is required for finetune: the corpus to learn, e.g. foldoc");
  }
  KVT_CHECK(d.held_out_fraction >= 0.0 && d.held_out_fraction < 1.0, where,
            ": key 'data.held_out_fraction' must be in [0, 1), got ", d.held_out_fraction);
  check_positive(where, "data.seq_len", d.seq_len);
  KVT_CHECK(d.seq_len <= r.model_config.max_seq_len, where, ": key 'data.seq_len' is ", d.seq_len,
            " but model '", r.model_config.name, "' has max_seq_len ", r.model_config.max_seq_len,
            ": lower data.seq_len to at most ", r.model_config.max_seq_len);
  check_non_negative(where, "data.max_entries", d.max_entries, "all entries");
  for (size_t i = 0; i < d.general.size(); ++i) {
    check_corpus_available(d.general[i], where + ": key 'data.general'");
  }
  if (!d.domain.empty()) check_corpus_available(d.domain, where + ": key 'data.domain'");
  for (const auto& name : d.domain_mix)
    check_corpus_available(name, where + ": key 'data.domain_mix'");
}

// A bank file a recipe names (its content is checked against the model when the run starts).
void check_bank_file(const std::string& where, const std::string& key, const std::string& path) {
  KVT_CHECK(fs::is_regular_file(path), where, ": key '", key, "' names '", path,
            "', which is not a file: give the path of a bank (.h5) written by kvtune, relative to "
            "the directory kvtune runs in");
}

void check_domain_bank(const Recipe& r, const std::string& where) {
  const DomainBankConfig& b = r.domain_bank;
  const MemoryConfig& m = r.model_config.memory;
  check_positive(where, "domain_bank.size", b.size);
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
  validate(b.index, where, "domain_bank.index");
  if (!b.init.empty()) check_bank_file(where, "domain_bank.init", b.init);
  for (const auto& path : b.attach) check_bank_file(where, "domain_bank.attach", path);
}

void check_optim_and_train(const Recipe& r, const std::string& where) {
  const OptimConfig& o = r.optim;
  check_positive(where, "optim.lr", o.lr);
  if (r.mode == "finetune" && r.method == "memory")
    check_positive(where, "optim.bank_lr", o.bank_lr);
  check_non_negative(where, "optim.weight_decay", o.weight_decay, "none");
  check_non_negative(where, "optim.grad_clip", o.grad_clip, "no clipping");
  check_non_negative(where, "optim.warmup_steps", o.warmup_steps, "no warm-up");

  const TrainConfig& t = r.train;
  check_positive(where, "train.steps", t.steps);
  check_positive(where, "train.batch_size", t.batch_size);
  check_non_negative(where, "train.checkpoint_every", t.checkpoint_every, "only at the end");
  check_non_negative(where, "train.eval_every", t.eval_every, "only before and after");
  check_non_negative(where, "train.log_every", t.log_every, "no progress lines");
  check_non_negative(where, "train.eval_batches", t.eval_batches, "the whole held-out set");
  check_non_negative(where, "train.threads", t.threads, "all cores");
  check_one_of(where, "train.device", t.device, {"cpu", "cuda"});
#ifndef KVTUNE_WITH_CUDA
  KVT_CHECK(t.device != "cuda", where,
            ": key 'train.device' is 'cuda' but kvtune was built without CUDA: set "
            "train.device: cpu, or rebuild with cmake -DKVTUNE_CUDA=ON against a libtorch with "
            "CUDA (docs/gpu.md)");
#else
  // The CUDA op exists (attention/cuda/), the trainer does not move the model there yet.
  KVT_CHECK(t.device != "cuda", where,
            ": key 'train.device' is 'cuda': this build has the CUDA attention op, but the "
            "trainer runs on the CPU only so far: set train.device: cpu");
#endif
}

// The recipe's attention settings (k against the model's base bank is checked by the trainer,
// which alone knows a finetune base's bank size).
void check_attention(const Recipe& r, const std::string& where) {
  const AttentionConfig& a = r.attention;
  if (!a.estimator.empty())
    check_one_of(where, "attention.estimator", a.estimator, estimator_names());
  check_non_negative(where, "attention.k", a.k, "the model's memory.k");
  check_positive(where, "attention.samples", a.samples);
  KVT_CHECK(a.groups >= 1 && a.groups <= a.samples, where,
            ": key 'attention.groups' must be in [1, attention.samples = ", a.samples, "], got ",
            a.groups);
  KVT_CHECK(a.tail_samples >= 0, where, ": key 'attention.tail_samples' must be >= 0, got ",
            a.tail_samples);
  check_positive(where, "attention.backward_samples", a.backward_samples);
}

}  // namespace

void validate_recipe(const Recipe& r, const std::string& where) {
  KVT_CHECK(!r.name.empty(), where, ": key 'name' is empty: name the recipe (default: file stem)");
  check_one_of(where, "mode", r.mode, recipe_modes());
  check_one_of(where, "method", r.method, recipe_methods());
  check_one_of(where, "backward", r.backward, backward_modes());
  check_attention(r, where);
  if (r.mode == "pretrain") {
    KVT_CHECK(r.base.empty(), where, ": key 'base' is for finetune recipes (pretraining starts ",
              "from scratch); remove it or set mode: finetune");
  } else {
    check_base(r, where);
  }
  validate(r.model_config, where + " (model '" + r.model + "')");
  check_data(r, where);
  if (r.mode == "finetune" && r.method == "memory") check_domain_bank(r, where);
  KVT_CHECK(r.domain_bank.init.empty() || (r.mode == "finetune" && r.method == "memory"), where,
            ": key 'domain_bank.init' needs mode finetune and method memory (this recipe has ",
            r.mode, " / ", r.method, "): remove it");
  KVT_CHECK(r.data.domain_mix.empty() || r.mode == "finetune", where,
            ": key 'data.domain_mix' is for finetune recipes: list pretraining corpora in "
            "data.general");
  KVT_CHECK(r.domain_bank.attach.empty() || (r.mode == "finetune" && r.method == "memory"), where,
            ": key 'domain_bank.attach' needs mode finetune and method memory (this recipe has ",
            r.mode, " / ", r.method, "): remove it, or evaluate with `kvtune eval --banks`");
  if (r.mode == "finetune" && r.method == "lora") {
    KVT_CHECK(r.lora.rank >= 1, where, ": key 'lora.rank' must be >= 1, got ", r.lora.rank);
    check_positive(where, "lora.alpha", r.lora.alpha);
  }
  check_optim_and_train(r, where);
}

}  // namespace kvtune

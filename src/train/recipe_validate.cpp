// validate_recipe: everything a run needs, checked before any work starts (marian's
// config_validator). Each mode checks what it uses; every message names the key and the fix.
#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "attention/estimator.h"
#include "common/check.h"
#include "common/path_checks.h"
#include "data/corpus.h"
#include "index/index_config_yaml.h"
#include "model/batch_memory.h"
#include "model/model_config_yaml.h"
#include "train/impl/recipe_checks.h"
#include "train/method.h"
#include "train/recipe_io.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

using impl::check_non_negative;
using impl::check_one_of;
using impl::check_positive;

// Most corpora one data list may name (each is opened and split; a longer list is a mistake, and
// 1.6 million names took hours before this check).
constexpr size_t kMaxCorpusList = 1000;

// Most threads a run may ask for: four per hardware thread (more only adds contention, and
// 100000 threads hung the machine).
int64_t max_threads() {
  const int64_t hw = static_cast<int64_t>(std::thread::hardware_concurrency());
  return 4 * std::max<int64_t>(hw, 1);
}

// What finetune loads from a pretrained run folder (the trainer's load_model(base/model)).
constexpr const char* kBaseModelConfig = "model/config.yaml";

void check_base(const Recipe& r, const std::string& where) {
  KVT_CHECK(!r.base.empty(), where,
            ": key 'base' is required for finetune: the pretrained run folder, e.g. base: "
            "runs/pretrain-general (made by `kvtune pretrain recipes/pretrain-general.yaml`)");
  KVT_CHECK(is_file(fs::path(r.base) / kBaseModelConfig), where, ": base '", r.base,
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
  for (const auto* list : {&d.general, &d.domain_mix}) {
    KVT_CHECK(list->size() <= kMaxCorpusList, where, ": key 'data.",
              list == &d.general ? "general" : "domain_mix", "' lists ", list->size(),
              " corpora; the limit is ", kMaxCorpusList,
              ": concatenate the texts into a few .txt or .jsonl files");
  }
  for (size_t i = 0; i < d.general.size(); ++i) {
    check_corpus_available(d.general[i], where + ": key 'data.general'");
  }
  if (!d.domain.empty()) check_corpus_available(d.domain, where + ": key 'data.domain'");
  for (const auto& name : d.domain_mix)
    check_corpus_available(name, where + ": key 'data.domain_mix'");
  check_positive(where, "data.train_templates", d.train_templates);
  std::vector<std::string> corpora = d.general;
  corpora.push_back(d.domain);
  corpora.insert(corpora.end(), d.domain_mix.begin(), d.domain_mix.end());
  for (const auto& name : corpora) {
    if (is_fact_set(name)) {
      check_train_templates(fact_set_templates(name), d.train_templates,
                            where + ": key 'data.train_templates'");
    }
  }
}

void check_optim_and_train(const Recipe& r, const std::string& where) {
  const OptimConfig& o = r.optim;
  check_positive(where, "optim.lr", o.lr);
  if (r.mode == "finetune" && make_method(r.method)->trains_bank_rows())
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
  KVT_CHECK(t.threads <= max_threads(), where, ": key 'train.threads' is ", t.threads,
            "; the limit is ", max_threads(), " (4 per hardware thread): use 0 for all cores");
  check_batch_fits(r.model_config, t.batch_size, r.data.seq_len,
                   where + ": key 'train.batch_size' = " + std::to_string(t.batch_size),
                   "lower train.batch_size (or data.seq_len)");
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

// train.shard_base_banks: what the sharded attention op supports (every method; pretraining
// not).
void check_sharding(const Recipe& r, const std::string& where) {
  if (!r.train.shard_base_banks) return;
  const std::string key = where + ": key 'train.shard_base_banks' is true";
  KVT_CHECK(r.mode == "finetune", key,
            " but pretraining trains every row of the base banks, which sharded fine-tuning does "
            "not support: pretrain whole, then shard the base banks when fine-tuning");
  KVT_CHECK(r.attention.estimator.empty() || r.attention.estimator == "topk", key,
            " but attention.estimator is '", r.attention.estimator,
            "': a sharded bank supports topk only; set attention.estimator: topk");
  KVT_CHECK(r.backward == "exact", key, " but backward is '", r.backward,
            "': a sharded bank supports backward exact only; set backward: exact");
  KVT_CHECK(!r.attention.learn_scale, key,
            " but attention.learn_scale is true: a sharded bank takes a fixed scale; set "
            "attention.learn_scale: false");
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
  if (r.mode == "finetune") make_method(r.method)->validate(r, where);
  KVT_CHECK(r.domain_bank.init.empty() || (r.mode == "finetune" && r.method == "memory"), where,
            ": key 'domain_bank.init' needs mode finetune and method memory (this recipe has ",
            r.mode, " / ", r.method, "): remove it");
  KVT_CHECK(r.data.domain_mix.empty() || r.mode == "finetune", where,
            ": key 'data.domain_mix' is for finetune recipes: list pretraining corpora in "
            "data.general");
  KVT_CHECK(r.domain_bank.attach.empty() || (r.mode == "finetune" && r.method == "memory"), where,
            ": key 'domain_bank.attach' needs mode finetune and method memory (this recipe has ",
            r.mode, " / ", r.method, "): remove it, or evaluate with `kvtune eval --banks`");
  check_optim_and_train(r, where);
  check_sharding(r, where);
}

}  // namespace kvtune

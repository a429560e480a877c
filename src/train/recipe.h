// A training recipe (recipes/*.yaml): what to train, on what, how long. Built-in defaults,
// then the YAML file, then --set key=value overrides; unknown keys are errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "model/model_config.h"

namespace kvtune {

struct DomainBankConfig {
  int64_t size = 1024;
  // Key and value sizes of the bank's rows; 0 takes the model's memory.key_dim / value_dim.
  // Set, they must equal the model's (a bank made for another model is rejected up front).
  int64_t key_dim = 0;
  int64_t value_dim = 0;
  std::string key_init = "kmeans";  // "kmeans" of the domain's queries | "random" | "sample"
  std::string value_init = "zero";  // "zero" | "random"
  IndexConfig index;                // default Flat (exact, no copy)
  // Train the memory layers' query projections with the bank (the default). false trains the
  // bank rows alone and leaves the model as it was, so that the bank serves the base model
  // itself: a bank meant to be attached beside others (kvtune eval --banks, bank merge) must be
  // trained this way, since each run's trained query projection is its own.
  bool train_query = true;
  // A bank file (kvtune bank export / merge, an earlier run's domain_<i>.h5) to start the new
  // domain bank from instead of size / key_init / value_init: its keys and values train on.
  // It must carry the base model's fingerprint and name the memory layer it starts.
  std::string init;
  // Bank files (kvtune bank export / merge / an earlier run's domain_<i>.h5) attached frozen,
  // after the base bank and before the new domain bank, while the new bank trains and in the
  // before/after evaluations: a domain added to a model that already serves others learns in
  // their presence. They must carry the base model's fingerprint; they are not copied into the
  // run's model folder (attach them again with `kvtune eval --banks`). Method memory only.
  std::vector<std::string> attach;
};

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16.0;
};

// Method sparse (docs/training.md): the base bank's own slots train, the top_t of each step by
// TF-IDF against the base model's background counts (background.h5), at optim.bank_lr.
struct SparseConfig {
  int64_t top_t = 500;             // slots trained per step and memory layer
  std::string train = "values";    // "values" | "values+keys"
  std::string optimizer = "adam";  // row optimizer: "adam" | "sgd" (row_optimizer.h)
};

struct OptimConfig {
  double lr = 1e-3;       // dense parameters (Adam)
  double bank_lr = 1e-2;  // bank rows (sparse row-wise Adam)
  double weight_decay = 0.0;
  double grad_clip = 1.0;
  int64_t warmup_steps = 20;
};

// The memory layers' attention while this recipe trains and evaluates (the saved model keeps its
// own settings for inference). Empty / 0 fields keep the model's.
struct AttentionConfig {
  std::string estimator;  // forward: "topk" | "dense" | "gumbel" | "topk+tail" ("": the model's)
  int64_t k = 0;          // 0: the model's memory.k
  int64_t samples = 128;  // "gumbel" forward: draws per query row
  int64_t groups = 4;     // "gumbel" forward: median-of-means groups
  int64_t tail_samples = 64;      // "topk+tail" forward: uniform tail keys per query row
  int64_t backward_samples = 32;  // "sampled" backward: draws per query row
  // Train the score scale c (one log c shared by the memory layers, learning rate
  // optim.bank_lr); the trained value goes into the saved model's memory.scale.
  bool learn_scale = false;
};

struct TrainConfig {
  int64_t steps = 200;
  int64_t batch_size = 16;
  uint64_t seed = 1;
  int64_t checkpoint_every = 100;
  int64_t eval_every = 0;  // 0 = only before and after
  int64_t log_every = 10;
  int64_t eval_batches = 20;   // held-out batches per evaluation (0 = whole set)
  int threads = 0;             // 0 = this process's share of the cores (common/threads.h)
  std::string device = "cpu";  // "cpu" | "cuda"
  // Pretraining: background access counts of the base banks (method sparse) over this many
  // training batches of the finished model, saved as model/background.h5; 0 = none.
  int64_t background_batches = 0;
  // Memory parallelism (docs/distributed.md): with several processes, every base bank's rows are
  // split across the ranks, each holding its share and that share's index (built from the
  // model's memory.index). Finetune with method memory, full or lora (the base banks stay
  // frozen); attention topk with backward exact.
  bool shard_base_banks = false;
};

struct Recipe {
  std::string name;
  std::string mode = "finetune";   // "pretrain" | "finetune"
  std::string method = "memory";   // method_names(): memory | sparse | full | lora (finetune)
  std::string base;                // finetune: the pretrained run folder
  std::string model = "tiny";      // pretrain: a name in configs/models/ or a YAML path
  ModelConfig model_config;        // resolved from `model`, then `model_overrides`
  std::string backward = "exact";  // "exact" | "sampled" | "dense" (knn_attention.h)
  AttentionConfig attention;
  DataConfig data;
  DomainBankConfig domain_bank;
  LoraConfig lora;
  SparseConfig sparse;
  OptimConfig optim;
  TrainConfig train;
};

}  // namespace kvtune

// Pretraining and fine-tuning runs: what `kvtune pretrain` and `kvtune finetune` execute.
// A run writes into its output folder: model/ (model folder, and what the method saves beside
// it), checkpoint.pt (atomic, every train.checkpoint_every steps; --resume continues from it),
// metrics.jsonl, recipe.yaml (the resolved recipe) and, for fine-tuning, report.json/.md;
// run.lock is its writer lock (run_folder.h).
// The pieces: train_loop.h (loop, evaluations), checkpoint.h, lr_schedule.h, learned_scale.h,
// method.h (what each method trains and saves), domain_bank_init.h, run_report.h.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/tokenizer.h"
#include "model/transformer.h"
#include "train/lm_metrics.h"
#include "train/recipe.h"
#include "train/run_report.h"
#include "train/train_loop.h"

namespace kvtune {

struct EvalPair {
  LmMetrics domain;
  LmMetrics general;
};

struct FinetuneOutcome {
  TrainOutcome train;
  EvalPair before;  // the base model (with domain_bank.attach banks), no new domain bank
  EvalPair after;
  nlohmann::json report;  // what report.json holds (docs/eval.md); empty when interrupted
};

// Metrics beyond the language-model ones, merged into the domain set's "before" and "after" in
// report.json: exact match for fact corpora (eval/facts.h). Called without gradient, with the
// model in eval mode.
using DomainMetricsFn = std::function<nlohmann::json(TransformerLM&, const Tokenizer&)>;

// The output folder is opened with open_run_folder (run_folder.h): `resume` continues the run
// there, `overwrite` replaces it; a folder holding a run is refused without either.
TrainOutcome pretrain(const Recipe& recipe, const std::string& out_dir, bool resume,
                      bool overwrite = false);

// Writes report.json and report.md (the same, as a table) into out_dir when training completes.
FinetuneOutcome finetune(const Recipe& recipe, const std::string& out_dir, bool resume,
                         const DomainMetricsFn& domain_metrics = {}, bool overwrite = false);

}  // namespace kvtune

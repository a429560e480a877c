// A recipe over the micro model (model_test_util.h) and small slices of WordNet and FOLDOC: runs
// of a few steps that the trainer tests can afford.
#pragma once

#include <string>

#include "model_test_util.h"
#include "train/recipe.h"

namespace kvtune::test {

inline Recipe micro_recipe(const std::string& mode) {
  Recipe r;
  r.name = "micro-" + mode;
  r.mode = mode;
  r.model_config = micro_config();
  r.data.general = {"wn"};
  r.data.domain = mode == "finetune" ? "foldoc" : "";
  r.data.seq_len = 32;
  r.data.max_entries = 300;
  r.domain_bank.size = 64;
  r.train.steps = 6;
  r.train.batch_size = 4;
  r.train.checkpoint_every = 0;
  r.train.log_every = 100;
  r.train.eval_batches = 2;
  r.train.threads = 1;  // same thread count on both sides of a resume
  r.optim.warmup_steps = 2;
  return r;
}

}  // namespace kvtune::test

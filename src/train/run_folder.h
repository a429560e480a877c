// The output folder of a pretrain or finetune run (docs/training.md, "Run folders"): who may
// write it, and when a run may start in it. Opening one
//   - refuses a folder that is the run's base model folder, lies inside it or holds it
//     (a fine-tune would rewrite its own base);
//   - takes an advisory lock (common/file_lock.h, `run.lock` inside the folder) for the whole
//     run, so two runs never write one folder at once;
//   - refuses a folder that already holds a run (recipe.yaml) unless `resume` (continue it) or
//     `overwrite` (remove that run's files first), and a non-empty folder that is not a run
//     unless `overwrite`;
//   - on `resume`, refuses a recipe that differs from the one the run started with, except in
//     the keys of resume_changeable_keys() (they do not change what the run computes);
//   - writes the resolved recipe as recipe.yaml.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/file_lock.h"
#include "train/recipe.h"

namespace kvtune {

// The lock on the folder; the run holds it until it returns.
std::unique_ptr<FileLock> open_run_folder(const Recipe& recipe, const std::string& out_dir,
                                          bool resume, bool overwrite);

// Recipe keys a --resume may change: train.log_every, train.checkpoint_every, train.eval_every,
// train.threads.
const std::vector<std::string>& resume_changeable_keys();

}  // namespace kvtune

// What a recipe reads: which corpora, how they are split into training and held-out sides, and
// how long a training sequence is (recipe key `data`, docs/recipes.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/fact_set.h"

namespace kvtune {

struct DataConfig {
  // Corpus names: dictd dictionaries by name ("wn", "gcide", "foldoc", "jargon"), the
  // built-in fact sets ("elements-facts", "eng-deu-facts": data/fact_sets.h), or paths to
  // .txt / .jsonl.
  std::vector<std::string> general = {"wn"};
  std::string domain;  // empty for pretraining
  // Finetune: more domains whose training splits are mixed in (a bank for several domains, or
  // a merged bank tuned on its domains together). Training batches take the sets in turn, step
  // i from set i mod (1 + size), so each set gets an equal share of the steps whatever its
  // size. Reports and evaluations stay on data.domain; measure the others with kvtune eval.
  std::vector<std::string> domain_mix;
  double held_out_fraction = 0.1;
  uint64_t split_salt = 0;
  int64_t seq_len = 128;    // tokens per training sequence
  int64_t max_entries = 0;  // cap per corpus (0 = all); keeps CPU runs short
  // Fact sets (data/fact_set.h): statement templates trained per relation and direction; the
  // others are held out, asked only in evaluation (recall in wordings never trained).
  int64_t train_templates = kDefaultTrainTemplates;
};

}  // namespace kvtune

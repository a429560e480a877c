// Counting how often each bank slot is retrieved while a model reads text: the usage that
// `kvtune bank compact --by usage` ranks slots by (fine-tuning does not count it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace kvtune {

struct UsageCountRequest {
  // Corpus names or paths; the model reads the training side of each under `data`'s split, so
  // that slots are never chosen by the held-out text they are later measured on.
  std::vector<std::string> sets;
  DataConfig data;
  int64_t batches = 20;  // batches per set, consecutive windows from the start (0: all)
  int64_t batch_size = 16;
};

struct UsageCount {
  int64_t sequences = 0;
  int64_t tokens = 0;
};

// Adds every retrieval of every memory layer to the usage of the bank it came from (each layer's
// attached banks, base and domain alike), then turns counting off again. No gradient.
UsageCount count_bank_usage(TransformerLM& model, const Tokenizer& tokenizer,
                            const UsageCountRequest& request);

}  // namespace kvtune

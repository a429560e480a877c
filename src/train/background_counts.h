// Background access counts of the base banks (method sparse): how the frozen model retrieves
// each base-bank slot on general text. The unit is one sequence (data.seq_len tokens): per
// memory layer i and base slot s,
//   df_i[s]    = the number of background sequences in which s was retrieved at least once
//   count_i[s] = how often s was retrieved over all of them (positions x heads x k)
// (A whole training batch retrieves most slots of a small bank: 3536 of tiny's 4096 in every
// batch of 16 x 128 bytes, so df per batch carries almost no information; docs/training.md.)
// Saved in the model folder as background.h5 (pretraining writes it; `kvtune background`
// computes it for an existing folder). docs/training.md "Method sparse".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/lm_dataset.h"
#include "model/transformer.h"

namespace kvtune {

inline constexpr const char* kBackgroundFile = "background.h5";

struct BackgroundCounts {
  int64_t sequences = 0;             // |B|: background sequences counted
  std::vector<torch::Tensor> df;     // per memory layer: [N_i] int64
  std::vector<torch::Tensor> count;  // per memory layer: [N_i] int64
};

// Retrieval counts of every memory layer's first (base) bank over `batches` training batches of
// `batch_size` sequences (|B| = batches x batch_size) of
// `data` ([batch_size, seq_len + 1], the stream of `seed`), without gradient, in eval mode.
BackgroundCounts count_background(TransformerLM& model, const LmDataset& data, int64_t batches,
                                  int64_t batch_size, uint64_t seed);

// Adds the retrievals of one batch, one df unit per sequence (the memory layers' last_ids after a
// forward) to `counts`.
void add_background_batch(BackgroundCounts& counts, TransformerLM& model);

// Writes `counts` atomically (HDF5: /sequences [1], /df_<i> and /count_<i> [N_i], int64).
void write_background(const std::string& path, const BackgroundCounts& counts);

// Reads and checks the file against `model`: one df and count per memory layer, each as long
// as that layer's base bank, 0 <= df <= sequences. Errors name the file and the fix.
BackgroundCounts read_background(const std::string& path, const TransformerLM& model);

}  // namespace kvtune

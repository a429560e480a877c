// Corpora as token streams: the documents a recipe trains on and the held-out sets it is
// measured on. Shared by the trainer and by `kvtune eval`, so both see the same split.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "data/lm_dataset.h"
#include "data/split.h"
#include "data/text_entry.h"
#include "model/tokenizer.h"

namespace kvtune {

// The text of an entry's document: "headword: text", or the text alone when the entry has no
// headword or does not show it.
std::string document_text(const TextEntry& entry);

// Each entry becomes one document: bos, document_text(entry), eos.
std::vector<std::vector<int64_t>> tokenize_entries(const std::vector<TextEntry>& entries,
                                                   const Tokenizer& tokenizer);

struct SplitData {
  std::unique_ptr<LmDataset> train, held_out;
};

// The corpora read with load_corpus(name, data.max_entries), each split by headword with
// (data.held_out_fraction, data.split_salt), sides concatenated in the order given. Pretraining
// reads this once: its training side also trains a learned tokenizer.
Split split_corpora(const std::vector<std::string>& corpora, const DataConfig& data);

// Both sides of `split` tokenized into sequences of data.seq_len.
SplitData tokenize_split(const Split& split, const DataConfig& data, const Tokenizer& tokenizer);

// tokenize_split(split_corpora(corpora, data), data, tokenizer).
SplitData load_split(const std::vector<std::string>& corpora, const DataConfig& data,
                     const Tokenizer& tokenizer);

// The held-out side of load_split alone (evaluation: the training side is not tokenized).
std::unique_ptr<LmDataset> load_held_out(const std::vector<std::string>& corpora,
                                         const DataConfig& data, const Tokenizer& tokenizer);

}  // namespace kvtune

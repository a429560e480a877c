#include "train/text_data.h"

#include "data/split.h"
#include "train/corpus.h"

namespace kvtune {

std::vector<std::vector<int64_t>> tokenize_entries(const std::vector<TextEntry>& entries,
                                                   const Tokenizer& tokenizer) {
  std::vector<std::vector<int64_t>> docs;
  docs.reserve(entries.size());
  for (const auto& e : entries) {
    const bool prefix = e.show_headword && !e.headword.empty();
    const std::string text = prefix ? e.headword + ": " + e.text : e.text;
    docs.push_back(tokenizer.encode(text, /*add_bos=*/true, /*add_eos=*/true));
  }
  return docs;
}

SplitData load_split(const std::vector<std::string>& corpora, const DataConfig& data,
                     const Tokenizer& tokenizer) {
  std::vector<TextEntry> train, held_out;
  for (const auto& name : corpora) {
    const auto split =
        split_entries(load_corpus(name, data.max_entries), data.held_out_fraction, data.split_salt);
    train.insert(train.end(), split.train.begin(), split.train.end());
    held_out.insert(held_out.end(), split.held_out.begin(), split.held_out.end());
  }
  SplitData s;
  s.train_documents = static_cast<int64_t>(train.size());
  s.held_out_documents = static_cast<int64_t>(held_out.size());
  s.train = std::make_unique<LmDataset>(tokenize_entries(train, tokenizer), data.seq_len);
  s.held_out = std::make_unique<LmDataset>(tokenize_entries(held_out, tokenizer), data.seq_len);
  return s;
}

}  // namespace kvtune

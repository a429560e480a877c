#include "data/text_data.h"

#include "data/corpus.h"
#include "data/split.h"

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

namespace {

Split split_corpora(const std::vector<std::string>& corpora, const DataConfig& data) {
  Split all;
  for (const auto& name : corpora) {
    auto split =
        split_entries(load_corpus(name, data.max_entries), data.held_out_fraction, data.split_salt);
    all.train.insert(all.train.end(), split.train.begin(), split.train.end());
    all.held_out.insert(all.held_out.end(), split.held_out.begin(), split.held_out.end());
  }
  return all;
}

}  // namespace

SplitData load_split(const std::vector<std::string>& corpora, const DataConfig& data,
                     const Tokenizer& tokenizer) {
  const Split split = split_corpora(corpora, data);
  SplitData s;
  s.train = std::make_unique<LmDataset>(tokenize_entries(split.train, tokenizer), data.seq_len);
  s.held_out =
      std::make_unique<LmDataset>(tokenize_entries(split.held_out, tokenizer), data.seq_len);
  return s;
}

std::unique_ptr<LmDataset> load_held_out(const std::vector<std::string>& corpora,
                                         const DataConfig& data, const Tokenizer& tokenizer) {
  return std::make_unique<LmDataset>(
      tokenize_entries(split_corpora(corpora, data).held_out, tokenizer), data.seq_len);
}

}  // namespace kvtune

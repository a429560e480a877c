#include "data/text_data.h"

#include "data/corpus.h"

namespace kvtune {

std::string document_text(const TextEntry& e) {
  const bool prefix = e.show_headword && !e.headword.empty();
  return prefix ? e.headword + ": " + e.text : e.text;
}

std::vector<std::vector<int64_t>> tokenize_entries(const std::vector<TextEntry>& entries,
                                                   const Tokenizer& tokenizer) {
  std::vector<std::vector<int64_t>> docs;
  docs.reserve(entries.size());
  for (const auto& e : entries) {
    docs.push_back(tokenizer.encode(document_text(e), /*add_bos=*/true, /*add_eos=*/true));
  }
  return docs;
}

Split split_corpora(const std::vector<std::string>& corpora, const DataConfig& data) {
  Split all;
  for (const auto& name : corpora) {
    auto split = split_entries(load_corpus(name, data.max_entries, data.train_templates),
                               data.held_out_fraction, data.split_salt);
    all.train.insert(all.train.end(), split.train.begin(), split.train.end());
    all.held_out.insert(all.held_out.end(), split.held_out.begin(), split.held_out.end());
  }
  return all;
}

SplitData tokenize_split(const Split& split, const DataConfig& data, const Tokenizer& tokenizer) {
  SplitData s;
  s.train = std::make_unique<LmDataset>(tokenize_entries(split.train, tokenizer), data.seq_len);
  s.held_out =
      std::make_unique<LmDataset>(tokenize_entries(split.held_out, tokenizer), data.seq_len);
  return s;
}

SplitData load_split(const std::vector<std::string>& corpora, const DataConfig& data,
                     const Tokenizer& tokenizer) {
  return tokenize_split(split_corpora(corpora, data), data, tokenizer);
}

std::unique_ptr<LmDataset> load_held_out(const std::vector<std::string>& corpora,
                                         const DataConfig& data, const Tokenizer& tokenizer) {
  return std::make_unique<LmDataset>(
      tokenize_entries(split_corpora(corpora, data).held_out, tokenizer), data.seq_len);
}

}  // namespace kvtune

// The byte-level tokenizer: each byte of the UTF-8 text is a token (ids 0..255), plus pad, bos
// and eos. No training step, no out-of-vocabulary input; the cost is longer sequences.
#pragma once

#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace kvtune {

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int kFormatVersion = 1;
  static constexpr int64_t kPad = 256;
  static constexpr int64_t kBos = 257;
  static constexpr int64_t kEos = 258;
  static constexpr int64_t kVocabSize = 259;

  std::string type() const override { return "byte"; }
  int64_t vocab_size() const override { return kVocabSize; }
  int64_t pad_id() const override { return kPad; }
  int64_t bos_id() const override { return kBos; }
  int64_t eos_id() const override { return kEos; }

  std::vector<int64_t> encode(const std::string& text, bool add_bos, bool add_eos) const override;
  // Bytes are copied as they are: invalid UTF-8 in the ids comes back as the same bytes.
  std::string decode(const std::vector<int64_t>& ids) const override;

  // {"type": "byte", "version": 1, "vocab_size": 259}
  void save(const std::string& path) const override;
  static ByteTokenizer load(const std::string& path);
};

}  // namespace kvtune

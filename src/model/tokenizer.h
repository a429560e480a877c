// Text <-> token ids behind a small interface, so that a learned tokenizer (SentencePiece) can be
// added beside the byte-level one without touching the model or training code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvtune {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The "type" recorded in tokenizer.json ("byte", "sentencepiece").
  virtual std::string type() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t pad_id() const = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;

  virtual std::vector<int64_t> encode(const std::string& text, bool add_bos,
                                      bool add_eos) const = 0;
  // Special tokens are skipped; an id outside [0, vocab_size) is a kvtune::Error.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;

  // Writes the tokenizer's JSON description atomically.
  virtual void save(const std::string& path) const = 0;
};

// Reads a tokenizer.json written by Tokenizer::save; refuses unknown types and versions.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// The tokenizer a model config names (key `tokenizer`), made for pretraining: "byte" needs no
// text (and never calls `texts`); "sentencepiece" is trained on texts() (the general corpus's
// training side) with `vocab_size` pieces. An unknown type is a kvtune::Error listing
// tokenizer_types().
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& type, int64_t vocab_size,
                                          const std::function<std::vector<std::string>()>& texts);
// Every tokenizer type: byte, sentencepiece.
const std::vector<std::string>& tokenizer_types();

}  // namespace kvtune

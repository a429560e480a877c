// A learned subword tokenizer: a SentencePiece unigram model (the sentencepiece library), trained
// at pretraining on the general corpus and kept in the model folder as tokenizer.model (the
// library's own file, readable by any SentencePiece tool) beside tokenizer.json. The library is
// reached through a module loaded at first use (docs/model.md, "Tokenizers": its bundled
// protobuf would clash with libtorch's).
//
// Every byte string survives encode -> decode unchanged (docs/model.md, "Tokenizers"):
//   - the library sees only valid UTF-8 with its identity normalization (no NFKC, no dummy
//     prefix, whitespace kept as it is), so its pieces concatenate back to the text;
//   - a byte that is not part of valid UTF-8, and the three bytes of U+2581 (the library's own
//     space marker, which would come back as a space), are encoded as the model's byte pieces
//     <0x00>..<0xFF> (the library's byte fallback) and decoded as those bytes;
//   - characters the model has no piece for fall back to byte pieces in the library itself.
// Ids: 0 unk (never produced: byte fallback covers every character), 1 bos, 2 eos, 3 pad.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace kvtune {

struct SentencePieceTrainOptions {
  int64_t vocab_size = 2048;
  // At most this many lines of the texts are given to the trainer, evenly spaced, so that
  // training stays a few seconds on a large corpus.
  int64_t max_lines = 100000;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  static constexpr int kFormatVersion = 1;
  static constexpr int64_t kUnk = 0, kBos = 1, kEos = 2, kPad = 3;
  // The smallest vocabulary: the 4 specials, the 256 byte pieces, and room for pieces.
  static constexpr int64_t kMinVocabSize = 320;
  // The model file kept beside tokenizer.json.
  static constexpr const char* kModelFile = "tokenizer.model";

  // Trains on the lines of `texts` (deterministic: one trainer thread, lines picked by position).
  // Throws kvtune::Error when the library refuses (e.g. too little text for the vocabulary).
  static SentencePieceTokenizer train(const std::vector<std::string>& texts,
                                      const SentencePieceTrainOptions& options);
  // From the library's serialized model (tokenizer.model); `where` names it in messages.
  static SentencePieceTokenizer from_model_proto(const std::string& proto,
                                                 const std::string& where);

  SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept;
  SentencePieceTokenizer& operator=(SentencePieceTokenizer&&) noexcept;
  ~SentencePieceTokenizer() override;

  std::string type() const override { return "sentencepiece"; }
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t pad_id() const override { return kPad; }
  int64_t bos_id() const override { return kBos; }
  int64_t eos_id() const override { return kEos; }

  std::vector<int64_t> encode(const std::string& text, bool add_bos, bool add_eos) const override;
  // Special tokens (unk, bos, eos, pad) are skipped; byte pieces give their byte.
  std::string decode(const std::vector<int64_t>& ids) const override;

  // tokenizer.json {"type": "sentencepiece", "version": 1, "vocab_size": N, "model_file":
  // "tokenizer.model", "model_bytes": B, "model_crc32": "hex"} and the model file beside it.
  void save(const std::string& path) const override;
  // Refuses a missing or damaged model file (size and CRC-32 against tokenizer.json), a model the
  // library cannot read, and one whose specials or byte pieces are not where kvtune puts them.
  static SentencePieceTokenizer load(const std::string& path);

  const std::string& model_proto() const { return proto_; }

 private:
  SentencePieceTokenizer() = default;
  void init(const std::string& where);

  std::string proto_;
  // The library's model, behind kvtune_sentencepiece (model/impl/sentencepiece_shim.cpp).
  std::shared_ptr<void> model_;
  int64_t vocab_size_ = 0;
  std::array<int64_t, 256> byte_ids_{};  // byte -> id of its piece <0xNN>
  std::vector<std::string> pieces_;      // id -> text it decodes to ("" for specials)
};

}  // namespace kvtune

#include "model/tokenizer.h"

#include "common/check.h"
#include "common/names.h"
#include "model/byte_tokenizer.h"
#include "model/impl/json_file.h"
#include "model/sentencepiece_tokenizer.h"

namespace kvtune {

const std::vector<std::string>& tokenizer_types() {
  static const std::vector<std::string> types = {"byte", "sentencepiece"};
  return types;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const auto json = detail::read_json_object(path, "tokenizer file");
  KVT_CHECK(json.contains("type") && json.at("type").is_string(), path,
            ": key 'type' (a string naming the tokenizer, e.g. \"byte\") is missing");
  const std::string type = json.at("type").get<std::string>();
  if (type == "byte") return std::make_unique<ByteTokenizer>(ByteTokenizer::load(path));
  if (type == "sentencepiece") {
    return std::make_unique<SentencePieceTokenizer>(SentencePieceTokenizer::load(path));
  }
  KVT_THROW(path, ": unknown tokenizer type '", type,
            "' (known types: ", join_names(tokenizer_types()), ")");
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& type, int64_t vocab_size,
                                          const std::function<std::vector<std::string>()>& texts) {
  if (type == "byte") return std::make_unique<ByteTokenizer>();
  if (type == "sentencepiece") {
    SentencePieceTrainOptions options;
    options.vocab_size = vocab_size;
    return std::make_unique<SentencePieceTokenizer>(
        SentencePieceTokenizer::train(texts(), options));
  }
  KVT_THROW("unknown tokenizer type '", type, "' (known types: ", join_names(tokenizer_types()),
            ")");
}

}  // namespace kvtune

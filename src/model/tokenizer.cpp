#include "model/tokenizer.h"

#include "common/check.h"
#include "model/byte_tokenizer.h"
#include "model/impl/json_file.h"

namespace kvtune {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const auto json = detail::read_json_object(path, "tokenizer file");
  KVT_CHECK(json.contains("type") && json.at("type").is_string(), path,
            ": key 'type' (a string naming the tokenizer, e.g. \"byte\") is missing");
  const std::string type = json.at("type").get<std::string>();
  if (type == "byte") return std::make_unique<ByteTokenizer>(ByteTokenizer::load(path));
  KVT_THROW(path, ": unknown tokenizer type '", type, "' (known types: byte)");
}

}  // namespace kvtune

#include "model/byte_tokenizer.h"

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/check.h"
#include "model/impl/json_file.h"

namespace kvtune {

std::vector<int64_t> ByteTokenizer::encode(const std::string& text, bool add_bos,
                                           bool add_eos) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size() + 2);
  if (add_bos) ids.push_back(kBos);
  for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
  if (add_eos) ids.push_back(kEos);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    KVT_CHECK(id >= 0 && id < kVocabSize, "byte tokenizer: id ", id, " at position ", i,
              " is outside the vocabulary [0, ", kVocabSize, ")");
    if (id < 256) text.push_back(static_cast<char>(static_cast<unsigned char>(id)));
  }
  return text;
}

void ByteTokenizer::save(const std::string& path) const {
  const nlohmann::ordered_json json = {
      {"type", type()}, {"version", kFormatVersion}, {"vocab_size", kVocabSize}};
  write_file_atomic(path, json.dump(2) + "\n");
}

ByteTokenizer ByteTokenizer::load(const std::string& path) {
  const auto json = detail::read_json_object(path, "tokenizer file");
  detail::check_json_keys(json, {"type", "version", "vocab_size"}, path);
  const auto& type_node = json.contains("type") ? json.at("type") : nlohmann::json();
  const std::string type = type_node.is_string() ? type_node.get<std::string>() : type_node.dump();
  KVT_CHECK(type == "byte", path, ": tokenizer type is '", type,
            "', expected 'byte' (load it with load_tokenizer)");
  const int64_t version = detail::json_int(json, "version", path);
  KVT_CHECK(version == kFormatVersion, path, ": byte tokenizer version ", version,
            " is not supported (this build reads version ", kFormatVersion,
            "): use the kvtune version that wrote it");
  const int64_t vocab = detail::json_int(json, "vocab_size", path);
  KVT_CHECK(vocab == kVocabSize, path, ": byte tokenizer vocab_size is ", vocab, ", expected ",
            kVocabSize, " (256 bytes + pad, bos, eos)");
  return ByteTokenizer();
}

}  // namespace kvtune

#include "data/text_reader.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "common/path_checks.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

std::ifstream open_text(const std::string& path, const char* kind) {
  KVT_CHECK(path_exists(path), kind, " ", path, " does not exist; fix the path");
  KVT_CHECK(!is_folder(path), kind, " ", path, " is a folder; pass a file");
  std::ifstream in(path, std::ios::binary);
  KVT_CHECK(in, kind, " ", path, " cannot be opened: ", std::strerror(errno));
  return in;
}

bool is_blank(const std::string& line) {
  return normalize_whitespace(line).empty();
}

std::string type_name(const nlohmann::json& value) {
  return value.type_name();
}

// The string in `record[key]`, or an error naming the file, line and what was found.
const std::string& string_field(const nlohmann::json& record, const std::string& key,
                                const std::string& path, size_t line_no, const char* option) {
  const auto it = record.find(key);
  if (it == record.end()) {
    std::string keys;
    for (const auto& item : record.items()) keys += (keys.empty() ? "" : ", ") + item.key();
    KVT_THROW("JSONL file ", path, " line ", line_no, ": no \"", key,
              "\" field (keys present: ", keys.empty() ? "none" : keys, "); add it, or pass ",
              option, "= the key that holds it");
  }
  KVT_CHECK(it->is_string(), "JSONL file ", path, " line ", line_no, ": field \"", key, "\" is a ",
            type_name(*it), ", expected a string");
  return it->get_ref<const std::string&>();
}

}  // namespace

std::vector<TextEntry> read_plain_text(const std::string& path) {
  std::ifstream in = open_text(path, "text file");
  std::vector<TextEntry> entries;
  std::string paragraph;
  auto flush = [&] {
    std::string text = normalize_whitespace(repair_utf8(paragraph));
    paragraph.clear();
    if (text.empty()) return;
    std::string headword = first_words(text, kHeadwordWords);
    entries.push_back(TextEntry{std::move(headword), std::move(text)});
  };
  std::string line;
  while (std::getline(in, line)) {
    if (is_blank(line)) {
      flush();
    } else {
      paragraph.append(line).push_back('\n');
    }
  }
  KVT_CHECK(!in.bad(), "text file ", path, ": read error: ", std::strerror(errno));
  flush();
  return entries;
}

std::vector<TextEntry> read_jsonl(const std::string& path, const std::string& field,
                                  const std::string& headword_field) {
  KVT_CHECK(!field.empty(), "read_jsonl: the text field name is empty; pass e.g. \"text\"");
  std::ifstream in = open_text(path, "JSONL file");
  std::vector<TextEntry> entries;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
      KVT_THROW("JSONL file ", path, " line ", line_no, ": invalid JSON (", e.what(),
                "); each line must hold one JSON object");
    }
    KVT_CHECK(record.is_object(), "JSONL file ", path, " line ", line_no, ": found a JSON ",
              type_name(record), ", expected an object such as {\"", field, "\": \"...\"}");
    const std::string& text = string_field(record, field, path, line_no, "field");
    if (is_blank(text)) continue;
    TextEntry entry;
    entry.text = text;
    entry.headword = headword_field.empty()
                         ? first_words(text, kHeadwordWords)
                         : normalize_whitespace(string_field(record, headword_field, path, line_no,
                                                             "headword_field"));
    entries.push_back(std::move(entry));
  }
  KVT_CHECK(!in.bad(), "JSONL file ", path, ": read error: ", std::strerror(errno));
  return entries;
}

}  // namespace kvtune

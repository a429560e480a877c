#include "data/dictd_reader.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "common/check.h"
#include "common/path_checks.h"
#include "data/gzip_file.h"
#include "data/text_clean.h"

namespace kvtune {
namespace {

// One distinct entry body and the index headwords that point at it.
struct Body {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::string> keys;
};

int dictd_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// dictfmt writes 00databaseinfo, 00-database-short, 00databaseutf8 and so on.
bool is_metadata_headword(const std::string& key) {
  std::string squeezed;
  for (char c : key) {
    if (c != '-' && c != '_') squeezed.push_back(c);
    if (squeezed.size() >= 10) break;
  }
  return squeezed.rfind("00database", 0) == 0;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? tab : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

uint64_t parse_number(const std::string& digits, const char* what, const std::string& path,
                      size_t line_no) {
  uint64_t value = 0;
  char bad = 0;
  if (decode_dictd_number(digits, &value, &bad)) return value;
  if (bad != 0) {
    KVT_THROW("dictd index ", path, " line ", line_no, ": ", what, " '", digits,
              "' has the character '", bad,
              "', which is not in the dictd base64 alphabet (A-Z a-z 0-9 + /); the index is "
              "corrupt or not a dictd .index file");
  }
  KVT_THROW("dictd index ", path, " line ", line_no, ": ", what, " '", digits,
            "' is empty or longer than 10 digits; the index is corrupt or not a dictd .index file");
}

// Reads the index, checking every line, and groups headwords by the bytes they point at.
std::vector<Body> read_index(const std::string& index_path, uint64_t dict_size,
                             const std::string& dict_path) {
  std::ifstream in(index_path, std::ios::binary);
  KVT_CHECK(in, "dictd index ", index_path, " cannot be opened: ", std::strerror(errno));
  std::vector<Body> bodies;
  std::map<std::pair<uint64_t, uint64_t>, size_t> body_of_span;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;  // a trailing blank line is harmless
    const auto fields = split_tabs(line);
    // dictfmt --index-keep-orig adds a 4th field: the headword before it was folded.
    KVT_CHECK(fields.size() == 3 || fields.size() == 4, "dictd index ", index_path, " line ",
              line_no, ": expected 3 tab-separated fields (headword, offset, length), found ",
              fields.size(), "; the index is corrupt or not a dictd .index file");
    const std::string& key = fields.size() == 4 ? fields[3] : fields[0];
    const uint64_t offset = parse_number(fields[1], "offset", index_path, line_no);
    const uint64_t length = parse_number(fields[2], "length", index_path, line_no);
    KVT_CHECK(offset <= dict_size && length <= dict_size - offset, "dictd index ", index_path,
              " line ", line_no, ": entry '", key, "' spans bytes ", offset, "..", offset + length,
              " but ", dict_path, " decompresses to only ", dict_size,
              " bytes; the index and dict files do not belong together or the dict is truncated");
    if (is_metadata_headword(fields[0])) continue;
    // An empty headword is skipped, not an error: Debian's dict-freedict-eng-deu has a few
    // (entries whose source line had none), and such an entry has nothing to be found by.
    if (normalize_whitespace(key).empty()) continue;
    auto [it, inserted] = body_of_span.emplace(std::make_pair(offset, length), bodies.size());
    if (inserted) bodies.push_back(Body{offset, length, {}});
    bodies[it->second].keys.push_back(key);
  }
  KVT_CHECK(!in.bad(), "dictd index ", index_path, ": read error: ", std::strerror(errno));
  return bodies;
}

// Right-trims each line and drops leading and trailing blank lines.
std::string tidy_lines(const std::string& text) {
  std::string out;
  size_t start = 0;
  size_t blank_run = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.pop_back();
    }
    if (line.empty()) {
      ++blank_run;
    } else {
      if (!out.empty()) out.append(blank_run > 0 ? "\n\n" : "\n");
      out.append(line);
      blank_run = 0;
    }
    start = end + 1;
  }
  return out;
}

TextEntry make_entry(const Body& body, const std::string& dict, DictdText layout) {
  const std::string raw = repair_utf8(std::string_view(dict).substr(body.offset, body.length));
  const size_t newline = raw.find('\n');
  const std::string first_line = raw.substr(0, newline);
  const std::string folded_first = fold_headword(first_line);
  TextEntry entry;
  std::string rest = raw;
  entry.headword = normalize_whitespace(body.keys.front());
  for (const auto& key : body.keys) {
    if (!folded_first.empty() && fold_headword(key) == folded_first) {
      entry.headword = normalize_whitespace(first_line);
      rest = newline == std::string::npos ? std::string() : raw.substr(newline + 1);
      break;
    }
  }
  entry.text = layout == DictdText::kNormalized ? normalize_whitespace(rest) : tidy_lines(rest);
  return entry;
}

}  // namespace

bool decode_dictd_number(const std::string& digits, uint64_t* value, char* bad) {
  *bad = 0;
  // 10 digits are 60 bits: more would overflow, and no real dictionary is that large.
  if (digits.empty() || digits.size() > 10) return false;
  uint64_t v = 0;
  for (char c : digits) {
    const int d = dictd_digit(c);
    if (d < 0) {
      *bad = c;
      return false;
    }
    v = v * 64 + static_cast<uint64_t>(d);
  }
  *value = v;
  return true;
}

std::vector<TextEntry> read_dictd(const std::string& index_path, const std::string& dict_path,
                                  DictdText text) {
  KVT_CHECK(path_exists(index_path), "dictd index ", index_path,
            " does not exist; install the dictionary (apt-get install dict-NAME) or fix the path");
  KVT_CHECK(path_exists(dict_path), "dictd dict ", dict_path,
            " does not exist; install the dictionary (apt-get install dict-NAME) or fix the path");
  const std::string dict = read_gzip_file(dict_path);
  const std::vector<Body> bodies = read_index(index_path, dict.size(), dict_path);
  std::vector<TextEntry> entries;
  entries.reserve(bodies.size());
  for (const auto& body : bodies) {
    TextEntry entry = make_entry(body, dict, text);
    if (!entry.text.empty()) entries.push_back(std::move(entry));
  }
  return entries;
}

std::string dictd_index_path(const std::string& name) {
  return std::string(kDictdDir) + "/" + name + ".index";
}

std::string dictd_dict_path(const std::string& name) {
  return std::string(kDictdDir) + "/" + name + ".dict.dz";
}

std::vector<TextEntry> read_dictd_named(const std::string& name, DictdText text) {
  KVT_CHECK(!name.empty() && name.find('/') == std::string::npos, "dictd dictionary name '", name,
            "' must be a bare name such as foldoc or wn; use read_dictd for paths");
  return read_dictd(dictd_index_path(name), dictd_dict_path(name), text);
}

}  // namespace kvtune

#include "common/yaml_reader.h"
#include "common/path_checks.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

namespace kvtune {

YamlReader::YamlReader(YAML::Node node, std::string where, std::string prefix)
    : node_(std::move(node)), where_(std::move(where)), prefix_(std::move(prefix)) {
  KVT_CHECK(!node_.IsDefined() || node_.IsNull() || node_.IsMap(), where_, ": ",
            prefix_.empty() ? std::string("the top level") : "key '" + prefix_ + "'",
            " must be a map of key: value");
}

bool YamlReader::has(const std::string& key) const {
  if (!node_.IsDefined() || node_.IsNull()) return false;
  const YAML::Node v = node_[key];
  return v.IsDefined() && !v.IsNull();
}

YamlReader YamlReader::child(const std::string& key) {
  known_.insert(key);
  YAML::Node v = has(key) ? node_[key] : YAML::Node();
  return YamlReader(v, where_, path(key));
}

void YamlReader::finish() const {
  if (!node_.IsDefined() || node_.IsNull()) return;
  for (const auto& kv : node_) {
    // A key that is not a scalar ([1, 2]: x) cannot be one of ours; as<std::string>() would
    // throw a yaml-cpp exception here (found by tests/fuzz/fuzz_yaml).
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
    if (known_.count(key)) continue;
    std::string valid;
    for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
    KVT_THROW(where_, ": unknown key '", path(key), "' (valid keys here: ", valid, ")");
  }
}

namespace {

// yaml-cpp keeps every pair of a map with a repeated key and lookups return the first: a second
// value would be silently ignored. Walks the tree (depth bounded, as yaml-cpp's parser is).
void check_no_duplicate_keys(const YAML::Node& node, const std::string& where, int depth,
                             int64_t& visits) {
  if (depth > 256) return;
  // Aliases are walked again wherever they are used: a "billion laughs" document is refused here
  // rather than walked for ever.
  KVT_CHECK(++visits <= 1000000, where,
            ": more than 1,000,000 YAML nodes once aliases are expanded: not a kvtune file");
  if (node.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (kv.first.IsScalar()) {
        const std::string key = kv.first.Scalar();
        KVT_CHECK(seen.insert(key).second, where, ": line ", kv.first.Mark().line + 1, ": key '",
                  key, "' appears twice in the same map: keep one of them");
      }
      check_no_duplicate_keys(kv.second, where, depth + 1, visits);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) check_no_duplicate_keys(item, where, depth + 1, visits);
  }
}

}  // namespace

namespace {

// Counts documents without building them, and stops at two: yaml-cpp 0.7's LoadAll loops
// forever on some malformed inputs (found by tests/fuzz/fuzz_yaml).
struct CountingHandler : YAML::EventHandler {
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

YAML::Node load_yaml_string(const std::string& text, const std::string& where) {
  YAML::Node node;
  int docs = 0;
  try {
    node = YAML::Load(text);
    std::istringstream in(text);
    YAML::Parser parser(in);
    CountingHandler handler;
    while (docs < 2 && parser.HandleNextDocument(handler)) ++docs;
  } catch (const YAML::Exception& e) {
    KVT_THROW(where, ": not valid YAML: ", e.what());
  }
  KVT_CHECK(docs <= 1, where,
            ": holds more than one YAML document (separated by ---): a file holds one; remove "
            "the others");
  int64_t visits = 0;
  check_no_duplicate_keys(node, where, 0, visits);
  return node;
}

YAML::Node load_yaml_file(const std::string& path) {
  KVT_CHECK(is_file(path), "file ", path, " does not exist");
  // Every kvtune YAML file (recipe, config, a run's recipe.yaml) is a few kilobytes: a large
  // file is the wrong file, refused before it is read into memory.
  constexpr std::uintmax_t kMaxYamlBytes = 16u << 20;
  std::error_code ec;
  const std::uintmax_t bytes = std::filesystem::file_size(path, ec);
  KVT_CHECK(!ec && bytes <= kMaxYamlBytes, path, " is ",
            ec ? std::string("unreadable") : std::to_string(bytes) + " bytes",
            ": a kvtune YAML file (recipe or config) is at most 16 MiB; check the path");
  std::ifstream in(path, std::ios::binary);
  KVT_CHECK(in.good(), "cannot read ", path);
  std::ostringstream text;
  text << in.rdbuf();
  return load_yaml_string(text.str(), path);
}

}  // namespace kvtune

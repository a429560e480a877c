#include "data/corpus.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "common/check.h"
#include "common/path_checks.h"
#include "data/dictd_reader.h"
#include "data/split.h"
#include "data/text_reader.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

// Salt of the max_entries sample: any fixed value other than a split salt a recipe would use,
// so that the sample and the held-out set are independent.
constexpr uint64_t kSampleSalt = 0x6b767475'6e652d73ull;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const DictdCorpus* find_dictd(const std::string& name) {
  for (const auto& c : dictd_corpora()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

std::string accepted_forms() {
  std::string names;
  for (const auto& c : dictd_corpora()) names += std::string(c.name) + ", ";
  for (const auto& n : fact_set_names()) names += n + ", ";
  return names + "or a path to a .txt or .jsonl file";
}

}  // namespace

const std::vector<DictdCorpus>& dictd_corpora() {
  static const std::vector<DictdCorpus> corpora = {
      {"wn", "dict-wn", true},
      {"gcide", "dict-gcide", false},
      {"foldoc", "dict-foldoc", true},
      {"jargon", "dict-jargon", true},
      {"elements", "dict-elements", true},
      {"freedict-eng-deu", "dict-freedict-eng-deu", true},
  };
  return corpora;
}

CorpusKind corpus_kind(const std::string& name_or_path) {
  if (find_dictd(name_or_path)) return CorpusKind::kDictd;
  if (is_fact_set(name_or_path)) return CorpusKind::kFactSet;
  if (ends_with(name_or_path, ".txt")) return CorpusKind::kPlainText;
  if (ends_with(name_or_path, ".jsonl")) return CorpusKind::kJsonl;
  KVT_THROW("corpus '", name_or_path, "' is not a known corpus: use one of ", accepted_forms());
}

void check_corpus_available(const std::string& name_or_path, const std::string& context) {
  CorpusKind kind;
  try {
    kind = corpus_kind(name_or_path);
  } catch (const Error& e) {
    KVT_THROW(context, ": ", e.what());
  }
  if (kind == CorpusKind::kDictd || kind == CorpusKind::kFactSet) {
    const DictdCorpus* c =
        find_dictd(kind == CorpusKind::kDictd ? name_or_path : fact_set_dictionary(name_or_path));
    std::string missing;
    for (const auto& p : {dictd_index_path(c->name), dictd_dict_path(c->name)}) {
      if (!is_file(p)) missing += (missing.empty() ? "" : " and ") + p;
    }
    KVT_CHECK(missing.empty(), context, ": corpus '", name_or_path, "' not found (", missing,
              " missing): install Debian package ", c->package,
              c->in_setup ? " (tools/setup does)" : " (apt-get install; tools/setup does not)");
    return;
  }
  KVT_CHECK(is_file(name_or_path), context, ": corpus file '", name_or_path,
            "' does not exist (paths are relative to the working folder)");
}

std::vector<TextEntry> sample_entries(std::vector<TextEntry> entries, int64_t max_entries) {
  KVT_CHECK(max_entries >= 0, "max_entries must be >= 0 (0 = all), got ", max_entries);
  if (max_entries == 0 || static_cast<size_t>(max_entries) >= entries.size()) return entries;
  std::vector<std::string> headwords;
  headwords.reserve(entries.size());
  for (const auto& e : entries) headwords.push_back(e.headword);
  const auto order = sample_by_hash(headwords, static_cast<size_t>(max_entries), kSampleSalt);
  std::vector<TextEntry> kept;
  kept.reserve(order.size());
  for (size_t i : order) kept.push_back(std::move(entries[i]));
  return kept;
}

std::vector<TextEntry> load_corpus(const std::string& name_or_path, int64_t max_entries,
                                   int64_t train_templates) {
  KVT_CHECK(max_entries >= 0, "corpus '", name_or_path,
            "': max_entries must be >= 0 (0 = all), got ", max_entries);
  check_corpus_available(name_or_path, "load_corpus");
  std::vector<TextEntry> entries;
  switch (corpus_kind(name_or_path)) {
    case CorpusKind::kDictd:
      entries = read_dictd_named(name_or_path);
      break;
    case CorpusKind::kFactSet:
      entries = fact_documents(*load_fact_set(name_or_path), train_templates);
      break;
    case CorpusKind::kPlainText:
      entries = read_plain_text(name_or_path);
      break;
    case CorpusKind::kJsonl:
      entries = read_jsonl(name_or_path);
      break;
  }
  return sample_entries(std::move(entries), max_entries);
}

}  // namespace kvtune

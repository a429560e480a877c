// Corpora by name, as recipes give them (data.general, data.domain): one entry point over the
// data readers, used by the trainer and checked by recipe validation before any work starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/fact_sets.h"
#include "data/text_entry.h"

namespace kvtune {

// Installed dictd dictionaries known by name, and the Debian package of each.
struct DictdCorpus {
  const char* name;     // "foldoc"
  const char* package;  // "dict-foldoc"
  bool in_setup;        // tools/packages.txt lists the package (tools/setup installs it)
};
const std::vector<DictdCorpus>& dictd_corpora();

// How a corpus name is read.
enum class CorpusKind { kDictd, kFactSet, kPlainText, kJsonl };

// The kind of `name_or_path`: a dictd name, a fact set ("elements-facts", "eng-deu-facts":
// data/fact_sets.h), or a path ending in .txt or .jsonl. Anything else is a kvtune::Error listing
// the accepted forms.
CorpusKind corpus_kind(const std::string& name_or_path);

// Throws kvtune::Error when the corpus cannot be read: a dictd name whose NAME.index or
// NAME.dict.dz is missing ("corpus 'foldoc' not found: install Debian package dict-foldoc
// (tools/setup does)"), or a path that is not a file. `context` opens the message
// ("recipes/foldoc.yaml: key 'data.domain'").
void check_corpus_available(const std::string& name_or_path, const std::string& context);

// Reads the corpus:
//  - a dictd name ("wn", "gcide", "foldoc", "jargon", "elements"): read_dictd_named, one entry
//    per dictionary entry;
//  - a fact set: fact_documents(set, train_templates) (data/fact_set.h): per fact, the first
//    `train_templates` statements of each direction and, for the half of the subjects that
//    teaches the answer format, the answered questions; headword the subject;
//  - a .txt path: read_plain_text; a .jsonl path: read_jsonl with field "text".
// max_entries > 0 keeps that many entries, chosen by a hash of the headword (a uniform sample,
// the same on every run, independent of the train/held-out split), in their original order;
// 0 keeps all. A dictionary's first entries would all start with the same letter.
std::vector<TextEntry> load_corpus(const std::string& name_or_path, int64_t max_entries,
                                   int64_t train_templates = kDefaultTrainTemplates);

// The sample load_corpus keeps: `max_entries` entries picked by headword hash, order kept.
std::vector<TextEntry> sample_entries(std::vector<TextEntry> entries, int64_t max_entries);

}  // namespace kvtune

// The built-in fact sets by name (data/fact_set.h), as recipes name them in data.domain: the one
// factory of fact sets.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/fact_set.h"

namespace kvtune {

// Chemical elements from dict-elements: symbol, atomic number, atomic weight (a few hundred
// facts).
inline constexpr const char* kElementsFacts = "elements-facts";
// English-to-German noun translations from dict-freedict-eng-deu (1200 facts).
inline constexpr const char* kEngDeuFacts = "eng-deu-facts";

// kElementsFacts, kEngDeuFacts.
const std::vector<std::string>& fact_set_names();

bool is_fact_set(const std::string& name);

// The dictd dictionary a fact set is read from ("elements", "freedict-eng-deu"); throws
// kvtune::Error for a name that is not a fact set.
std::string fact_set_dictionary(const std::string& name);

// The fact set's relations and templates without its facts: what validating a recipe's
// data.train_templates needs, without reading the dictionary.
FactSet fact_set_templates(const std::string& name);

// The fact set, read from its installed dictionary once per process (then shared). Throws
// kvtune::Error for an unknown name, listing the known ones, and as the dictd reader does for a
// missing or damaged dictionary.
std::shared_ptr<const FactSet> load_fact_set(const std::string& name);

}  // namespace kvtune

#include "data/fact_sets.h"

#include <map>
#include <mutex>

#include "common/check.h"
#include "common/names.h"
#include "data/elements.h"
#include "data/word_translations.h"

namespace kvtune {
const std::vector<std::string>& fact_set_names() {
  static const std::vector<std::string> names = {kElementsFacts, kEngDeuFacts};
  return names;
}

bool is_fact_set(const std::string& name) {
  for (const auto& n : fact_set_names()) {
    if (n == name) return true;
  }
  return false;
}

std::string fact_set_dictionary(const std::string& name) {
  if (name == kElementsFacts) return "elements";
  if (name == kEngDeuFacts) return "freedict-eng-deu";
  KVT_THROW("'", name, "' is not a fact set: use one of ", join_names(fact_set_names()));
}

FactSet fact_set_templates(const std::string& name) {
  fact_set_dictionary(name);  // refuses an unknown name
  return name == kElementsFacts ? elements_fact_set({}) : translations_fact_set({});
}

std::shared_ptr<const FactSet> load_fact_set(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const FactSet>> cache;
  const std::string dictionary = fact_set_dictionary(name);
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[name];
  if (!slot) {
    if (name == kElementsFacts) {
      slot = std::make_shared<const FactSet>(elements_fact_set(read_elements(dictionary)));
    } else {
      slot = std::make_shared<const FactSet>(
          translations_fact_set(read_translations(dictionary, kTranslationFacts)));
    }
  }
  return slot;
}

}  // namespace kvtune

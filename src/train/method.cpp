#include "train/method.h"

#include "common/check.h"
#include "model/model_io.h"
#include "train/impl/methods.h"

namespace kvtune {

namespace {

struct MethodEntry {
  const char* name;
  std::unique_ptr<Method> (*make)();
};

// The one registry of methods: a new method is one file in train/impl/ and one line here.
const std::vector<MethodEntry>& registry() {
  static const std::vector<MethodEntry> entries = {{"memory", impl::make_memory_method},
                                                   {"sparse", impl::make_sparse_method},
                                                   {"full", impl::make_full_method},
                                                   {"lora", impl::make_lora_method}};
  return entries;
}

}  // namespace

void Method::save(TrainState& s, const ModelConfig& config, const Tokenizer& tokenizer,
                  const std::string& model_dir) {
  save_model(model_dir, s.model, config, tokenizer);
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& e : registry()) n.push_back(e.name);
    return n;
  }();
  return names;
}

std::unique_ptr<Method> make_method(const std::string& name) {
  for (const auto& e : registry()) {
    if (name == e.name) return e.make();
  }
  std::string known;
  for (const auto& n : method_names()) known += (known.empty() ? "" : ", ") + n;
  KVT_THROW("unknown method '", name, "': choose one of ", known);
}

}  // namespace kvtune

#include "attention/estimator.h"

#include <functional>
#include <map>

#include "attention/impl/estimators.h"
#include "common/check.h"

namespace kvtune {
namespace {

const std::map<std::string, std::function<std::unique_ptr<Estimator>()>>& registry() {
  static const std::map<std::string, std::function<std::unique_ptr<Estimator>()>> r = {
      {"topk", impl::make_topk_estimator},
      {"dense", impl::make_dense_estimator},
      {"gumbel", impl::make_gumbel_estimator},
      {"topk+tail", impl::make_topk_tail_estimator},
  };
  return r;
}

}  // namespace

std::vector<std::string> estimator_names() {
  std::vector<std::string> names;
  for (const auto& [name, make] : registry()) names.push_back(name);
  return names;
}

std::unique_ptr<Estimator> make_estimator(const std::string& name) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    std::string valid;
    for (const auto& n : estimator_names()) valid += (valid.empty() ? "" : ", ") + n;
    KVT_THROW("unknown estimator '", name, "': choose one of ", valid);
  }
  return it->second();
}

}  // namespace kvtune

#include "model/module_state.h"

#include <filesystem>
#include <set>
#include <sstream>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {

namespace {

constexpr const char* kVersionKey = "kvtune_format_version";

std::string joined(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

void read_tensor_into(torch::serialize::InputArchive& archive, const std::string& key,
                      torch::Tensor& target, const std::string& name, const std::string& path) {
  torch::Tensor stored;
  KVT_CHECK(archive.try_read(key, stored), path, ": tensor '", name,
            "' is missing: the file was written for a different model config");
  KVT_CHECK(stored.sizes() == target.sizes(), path, ": tensor '", name, "' has shape ",
            stored.sizes(), " in the file but ", target.sizes(),
            " in the model built from the config: the config does not match the saved weights");
  KVT_CHECK(stored.scalar_type() == target.scalar_type(), path, ": tensor '", name, "' has dtype ",
            stored.scalar_type(), " in the file but ", target.scalar_type(), " in the model");
  KVT_CHECK(!stored.is_floating_point() || torch::isfinite(stored).all().item<bool>(), path,
            ": tensor '", name,
            "' holds non-finite values (NaN or infinity): the file is damaged, "
            "or it was saved from a run that diverged");
  torch::NoGradGuard no_grad;
  target.copy_(stored);
}

void load_recursive(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                    const std::string& prefix, const std::string& path) {
  std::set<std::string> expected;
  for (auto& p : module.named_parameters(/*recurse=*/false)) {
    read_tensor_into(archive, p.key(), p.value(), joined(prefix, p.key()), path);
    expected.insert(p.key());
  }
  for (auto& b : module.named_buffers(/*recurse=*/false)) {
    read_tensor_into(archive, b.key(), b.value(), joined(prefix, b.key()), path);
    expected.insert(b.key());
  }
  for (auto& child : module.named_children()) {
    torch::serialize::InputArchive nested;
    KVT_CHECK(archive.try_read(child.key(), nested), path, ": module '",
              joined(prefix, child.key()),
              "' is missing: the file was written for a different model config");
    load_recursive(*child.value(), nested, joined(prefix, child.key()), path);
    expected.insert(child.key());
  }
  for (const auto& key : archive.keys()) {
    if (expected.count(key) || (prefix.empty() && key == kVersionKey)) continue;
    torch::Tensor tensor;
    KVT_CHECK(!archive.try_read(key, tensor), path, ": holds tensor '", joined(prefix, key),
              "' of shape ", tensor.sizes(),
              " that the model built from the config does not have: the config does not match");
    torch::serialize::InputArchive nested;
    KVT_CHECK(!archive.try_read(key, nested), path, ": holds module '", joined(prefix, key),
              "' that the model built from the config does not have: the config does not match");
  }
}

}  // namespace

void save_module_state(const torch::nn::Module& module, const std::string& path) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.write(kVersionKey, c10::IValue(kModuleStateFormatVersion));
  // To memory first: libtorch's file writer finishes the file in its destructor, and a full
  // disk there terminates the process. write_file_atomic fails cleanly instead.
  std::ostringstream image;
  archive.save_to(image);
  write_file_atomic(path, image.str());
}

void load_module_state(torch::nn::Module& module, const std::string& path) {
  KVT_CHECK(is_file(path), "weights file ", path, " does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    KVT_THROW(path, ": not a readable weights file (", e.what_without_backtrace(), ")");
  }
  c10::IValue version;
  KVT_CHECK(archive.try_read(kVersionKey, version) && version.isInt(), path, ": no ", kVersionKey,
            ": not a kvtune weights file (write it with save_module_state)");
  KVT_CHECK(version.toInt() == kModuleStateFormatVersion, path, ": weights format version ",
            version.toInt(), " is not supported (this build reads version ",
            kModuleStateFormatVersion, ")");
  load_recursive(module, archive, "", path);
}

}  // namespace kvtune

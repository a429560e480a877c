#include "train/checkpoint.h"

#include <mutex>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include "common/atomic_file.h"
#include "common/check.h"

namespace kvtune {
namespace {

constexpr const char* kCpuRngKey = "rng/cpu";
constexpr const char* kCudaRngKey = "rng/cuda";

// The default generators torch's own random ops draw from (dropout, randn in initializers):
// without them a resumed run would draw other numbers than an uninterrupted one.
at::Generator default_cuda_generator() {
  return at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, 0));
}

}  // namespace

void save_checkpoint(const std::string& path, int64_t step, TrainState& s,
                     torch::optim::AdamW& dense_opt, RowOptimizer* row_opt) {
  torch::serialize::OutputArchive archive;
  archive.write("step", torch::tensor(step));
  for (const auto& p : s.model->named_parameters()) archive.write("model/" + p.key(), p.value());
  for (const auto& b : s.model->named_buffers()) archive.write("buffer/" + b.key(), b.value());
  for (size_t i = 0; i < s.banks.size(); ++i) {
    const auto& bank = s.banks[i]->bank();
    archive.write("bank" + std::to_string(i) + "/keys", bank.keys.detach());
    archive.write("bank" + std::to_string(i) + "/values", bank.values.detach());
    archive.write("bank" + std::to_string(i) + "/usage", bank.usage);
  }
  if (s.log_scale.defined()) archive.write("attention/log_scale", s.log_scale.detach());
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> guard(gen.mutex());
    archive.write(kCpuRngKey, gen.get_state());
  }
  if (torch::cuda::is_available()) {
    at::Generator gen = default_cuda_generator();
    std::lock_guard<std::mutex> guard(gen.mutex());
    archive.write(kCudaRngKey, gen.get_state());
  }
  torch::serialize::OutputArchive opt;
  dense_opt.save(opt);
  archive.write("dense_optimizer", opt);
  if (row_opt != nullptr) {
    const auto state = row_opt->state();
    for (size_t i = 0; i < state.size(); ++i)
      archive.write("sparse/" + std::to_string(i), state[i]);
  }
  // To memory first: libtorch's file writer finishes the file in its destructor, and a full
  // disk there terminates the process. write_file_atomic fails cleanly instead.
  std::ostringstream image;
  archive.save_to(image);
  write_file_atomic(path, image.str());
}

int64_t load_checkpoint(const std::string& path, TrainState& s, torch::optim::AdamW& dense_opt,
                        RowOptimizer* row_opt) {
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    KVT_THROW("checkpoint ", path, " cannot be read (damaged?): delete it to start over");
  }
  auto read = [&](const std::string& key, const torch::Tensor& into) {
    torch::Tensor t;
    KVT_CHECK(archive.try_read(key, t), "checkpoint ", path, " has no '", key,
              "': it was written by another recipe (use another --out or delete it)");
    KVT_CHECK(t.sizes() == into.sizes(), "checkpoint ", path, ": '", key, "' has shape ", t.sizes(),
              ", expected ", into.sizes(), " (another recipe?)");
    into.copy_(t);
  };
  torch::Tensor step;
  archive.read("step", step);
  for (const auto& p : s.model->named_parameters()) read("model/" + p.key(), p.value());
  for (const auto& b : s.model->named_buffers()) read("buffer/" + b.key(), b.value());
  for (size_t i = 0; i < s.banks.size(); ++i) {
    auto& bank = s.banks[i]->mutable_bank();
    read("bank" + std::to_string(i) + "/keys", bank.keys);
    read("bank" + std::to_string(i) + "/values", bank.values);
    read("bank" + std::to_string(i) + "/usage", bank.usage);
    s.banks[i]->rebuild_index();
  }
  if (s.log_scale.defined()) read("attention/log_scale", s.log_scale);
  // Checkpoints written before the generator states were kept have none: the run continues
  // with the generators as they are (its later random draws differ from an uninterrupted run).
  torch::Tensor rng;
  if (archive.try_read(kCpuRngKey, rng)) {
    try {
      at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle to the same one
      std::lock_guard<std::mutex> guard(gen.mutex());
      gen.set_state(rng);
    } catch (const c10::Error& e) {
      KVT_THROW("checkpoint ", path, ": its CPU generator state cannot be restored (",
                e.what_without_backtrace(), "): delete it to start over");
    }
  }
  torch::Tensor cuda_rng;
  if (torch::cuda::is_available() && archive.try_read(kCudaRngKey, cuda_rng)) {
    try {
      at::Generator gen = default_cuda_generator();
      std::lock_guard<std::mutex> guard(gen.mutex());
      gen.set_state(cuda_rng);
    } catch (const c10::Error& e) {
      KVT_THROW("checkpoint ", path, ": its CUDA generator state cannot be restored (",
                e.what_without_backtrace(), "): delete it to start over");
    }
  }
  torch::serialize::InputArchive opt;
  archive.read("dense_optimizer", opt);
  dense_opt.load(opt);
  if (row_opt != nullptr) {
    auto state = row_opt->state();
    for (size_t i = 0; i < state.size(); ++i) {
      archive.read("sparse/" + std::to_string(i), state[i]);
    }
    row_opt->load_state(state);
  }
  return step.item<int64_t>();
}

}  // namespace kvtune

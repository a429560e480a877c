#include "train/checkpoint.h"

#include <filesystem>
#include <mutex>
#include <regex>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCpuRngKey = "rng/cpu";
constexpr const char* kCudaRngKey = "rng/cuda";
// In a checkpoint of a run with split banks: the world size that wrote it (absent otherwise).
constexpr const char* kSplitWorldKey = "split/world_size";

// The default generators torch's own random ops draw from (dropout, randn in initializers):
// without them a resumed run would draw other numbers than an uninterrupted one.
at::Generator default_cuda_generator() {
  return at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, 0));
}

void save_checkpoint(const std::string& path, int64_t step, TrainState& s,
                     torch::optim::AdamW& dense_opt, RowOptimizer* row_opt, int64_t split_world) {
  torch::serialize::OutputArchive archive;
  archive.write("step", torch::tensor(step));
  if (split_world > 0) archive.write(kSplitWorldKey, torch::tensor(split_world));
  for (const auto& p : s.model->named_parameters()) archive.write("model/" + p.key(), p.value());
  for (const auto& b : s.model->named_buffers()) archive.write("buffer/" + b.key(), b.value());
  for (size_t i = 0; i < s.banks.size(); ++i) {
    const auto& bank = s.banks[i]->bank();
    archive.write("bank" + std::to_string(i) + "/keys", bank.keys.detach());
    archive.write("bank" + std::to_string(i) + "/values", bank.values.detach());
    archive.write("bank" + std::to_string(i) + "/usage", bank.usage);
  }
  if (s.log_scale.defined()) archive.write("attention/log_scale", s.log_scale.detach());
  for (size_t i = 0; i < s.method_state.size(); ++i)
    archive.write("method/" + std::to_string(i), s.method_state[i]);
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

// split_world: the world size of a run with split banks, 0 without.
int64_t load_checkpoint(const std::string& path, TrainState& s, torch::optim::AdamW& dense_opt,
                        RowOptimizer* row_opt, int64_t split_world) {
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    KVT_THROW("checkpoint ", path, " cannot be read (damaged?): delete it to start over");
  }
  torch::Tensor written_world;
  const int64_t written =
      archive.try_read(kSplitWorldKey, written_world) ? written_world.item<int64_t>() : 0;
  if (written != split_world) {
    KVT_CHECK(written > 0, "checkpoint ", path,
              " was written by a run whose banks were whole on every rank, but this run splits "
              "its base banks across ranks (train.shard_base_banks): resume with the recipe it "
              "was written with, or delete it to start over");
    KVT_CHECK(split_world > 0, "checkpoint ", path, " was written by a run whose base banks were ",
              "split across ", written, " ranks (train.shard_base_banks): resume with that ",
              "recipe, or delete it to start over");
    KVT_THROW("checkpoint ", path, " was written by ", written, " ranks with split base banks, ",
              "and each rank's shard is in its own file: resume with --nproc ", written,
              ", or delete the checkpoint files to start over");
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
  for (size_t i = 0; i < s.method_state.size(); ++i)
    read("method/" + std::to_string(i), s.method_state[i]);
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

// Rank r's own file for step `step` in a run with split banks.
std::string rank_checkpoint_path(const std::string& out_dir, int rank, int64_t step) {
  return (fs::path(out_dir) /
          ("checkpoint.rank" + std::to_string(rank) + ".step" + std::to_string(step) + ".pt"))
      .string();
}

// The ranks' own files in out_dir (rank < 0: every rank's) of every step but `keep` (< 0: all).
void remove_rank_files(const std::string& out_dir, int rank, int64_t keep) {
  const std::regex name("checkpoint\\.rank([0-9]+)\\.step([0-9]+)\\.pt");
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    if ((rank < 0 || m[1].str() == std::to_string(rank)) && m[2].str() != std::to_string(keep))
      stale.push_back(entry.path());
  }
  for (const auto& p : stale) fs::remove(p, ec);  // a file left over is removed next time
}

}  // namespace

std::string checkpoint_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "checkpoint.pt").string();
}

void remove_rank_checkpoints(const std::string& out_dir) {
  remove_rank_files(out_dir, -1, -1);
}

void save_run_checkpoint(Communicator& comm, const std::string& out_dir, int64_t step,
                         TrainState& s, torch::optim::AdamW& dense_opt, RowOptimizer* row_opt) {
  if (s.split_banks.empty()) {
    if (comm.is_writer()) save_checkpoint(checkpoint_path(out_dir), step, s, dense_opt, row_opt, 0);
    return;
  }
  const int64_t world = comm.size();
  if (!comm.is_writer())
    save_checkpoint(rank_checkpoint_path(out_dir, comm.rank(), step), step, s, dense_opt, row_opt,
                    world);
  comm.barrier();  // every rank's file of this step is complete
  if (comm.is_writer())
    save_checkpoint(checkpoint_path(out_dir), step, s, dense_opt, row_opt, world);
  comm.barrier();  // checkpoint.pt names this step: the other steps' files may go
  if (!comm.is_writer()) remove_rank_files(out_dir, comm.rank(), step);
}

int64_t load_run_checkpoint(Communicator& comm, const std::string& out_dir, TrainState& s,
                            torch::optim::AdamW& dense_opt, RowOptimizer* row_opt) {
  const std::string main = checkpoint_path(out_dir);
  if (!path_exists(main)) return 0;
  if (s.split_banks.empty()) return load_checkpoint(main, s, dense_opt, row_opt, 0);
  // Split banks: rank 0 reads checkpoint.pt and sends its step (a rank 0 that cannot read it
  // stops, and the others' wait names it); rank r > 0 reads its own file of that step.
  const int64_t world = comm.size();
  auto step = torch::zeros({1}, torch::kInt64);
  if (comm.is_writer()) step[0] = load_checkpoint(main, s, dense_opt, row_opt, world);
  comm.broadcast(step, 0, "setup");
  const int64_t at = step.item<int64_t>();
  if (comm.is_writer()) return at;
  const std::string mine = rank_checkpoint_path(out_dir, comm.rank(), at);
  KVT_CHECK(path_exists(mine), main, " names step ", at, ", but rank ", comm.rank(),
            "'s own checkpoint of that step, ", mine,
            ", is missing: every rank must write into the same folder (a shared file system). "
            "Delete the checkpoint files to start over");
  const int64_t own = load_checkpoint(mine, s, dense_opt, row_opt, world);
  KVT_CHECK(own == at, mine, " holds step ", own, " but its name and ", main, " say step ", at,
            ": the file was renamed or damaged; delete the checkpoint files to start over");
  return at;
}

}  // namespace kvtune

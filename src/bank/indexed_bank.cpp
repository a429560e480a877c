#include "bank/indexed_bank.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>

#include "bank/bank_io.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "common/path_checks.h"
#include "index/index_reader.h"

namespace kvtune {

IndexedBank::IndexedBank(Bank bank, IndexConfig config)
    : bank_(std::move(bank)), config_(std::move(config)) {
  KVT_CHECK(bank_.keys.scalar_type() == torch::kFloat32, "bank '", bank_.meta.name,
            "': indexed banks hold float32 keys");
  bank_.keys = bank_.keys.contiguous();
  bank_.meta.index_factory = config_.factory;
  rebuild_index();
  set_trainable(bank_.meta.trainable);
}

namespace {

namespace fs = std::filesystem;

// The binding trailer appended to an index file: faiss readers stop at the end of the index and
// never see it (docs/bank-format.md, "The faiss index beside the bank").
constexpr char kTrailerTag[] = "KVTUNE-BANK-ID:";
constexpr size_t kTagSize = sizeof(kTrailerTag) - 1;  // 15
constexpr size_t kIdSize = 16;
constexpr size_t kTrailerSize = kTagSize + kIdSize + 1;  // tag, 16 hex digits, '\n'

bool is_index_id(const std::string& s) {
  return s.size() == kIdSize && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(c) && !std::isupper(c);
         });
}

std::string new_index_id() {
  std::random_device rd;
  std::mt19937_64 rng(
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()) ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  char buf[kIdSize + 1];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

void append_trailer(const std::string& path, const std::string& id) {
  const std::string trailer = std::string(kTrailerTag) + id + "\n";
  std::FILE* f = std::fopen(path.c_str(), "ab");
  KVT_CHECK(f != nullptr, "cannot append to ", path, ": ", std::strerror(errno));
  const bool ok = std::fwrite(trailer.data(), 1, trailer.size(), f) == trailer.size();
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  KVT_CHECK(ok && closed, "cannot write ", path, ": ", std::strerror(ok ? errno : err),
            ": check the folder has space");
}

void sync_folder(const std::string& file) {
  const fs::path parent = fs::path(file).parent_path();
  const int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  KVT_CHECK(fd >= 0, "cannot open ", path, " to sync it: ", std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  KVT_CHECK(ok, "cannot sync ", path, ": ", std::strerror(err), ": check the folder has space");
}

// "x.faiss" -> "x.faiss.<id>": the index of a save whose bank rename (the commit) may not have
// happened yet.
std::string pending_index_path(const std::string& index_path, const std::string& id) {
  return index_path + "." + id;
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  if (pid == ::getpid()) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// A name "<prefix><pid>" or "<prefix><pid>.tmp.<pid2>": the pids of the writers it belongs to.
bool temp_of_dead_writer(const std::string& rest) {
  size_t pos = 0;
  while (pos < rest.size()) {
    size_t end = pos;
    while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
    if (end == pos) return false;
    if (process_alive(std::stol(rest.substr(pos, end - pos)))) return false;
    if (end == rest.size()) return true;
    if (rest.compare(end, 5, ".tmp.") != 0) return false;
    pos = end + 5;
  }
  return false;
}

}  // namespace

std::string read_index_binding(const std::string& index_path) {
  std::FILE* f = std::fopen(index_path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string tail(kTrailerSize, '\0');
  bool ok = std::fseek(f, -static_cast<long>(kTrailerSize), SEEK_END) == 0 &&
            std::fread(tail.data(), 1, kTrailerSize, f) == kTrailerSize;
  std::fclose(f);
  if (!ok || tail.compare(0, kTagSize, kTrailerTag) != 0 || tail.back() != '\n') return "";
  const std::string id = tail.substr(kTagSize, kIdSize);
  return is_index_id(id) ? id : "";
}

void clean_bank_leftovers(const std::string& path) {
  const std::string index_path = index_path_for(path);
  const auto current = read_bank_index_id(path);
  std::error_code ec;
  // A save killed after its bank rename: finish it (the bank names that index).
  if (current && !current->empty()) {
    const std::string pending = pending_index_path(index_path, *current);
    if (fs::is_regular_file(pending, ec) && read_index_binding(index_path) != *current) {
      fs::rename(pending, index_path, ec);
    }
  }
  const fs::path folder =
      fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  const std::string bank_name = fs::path(path).filename().string();
  const std::string index_name = fs::path(index_path).filename().string();
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    bool remove = false;
    for (const auto& prefix : {bank_name + ".tmp.", index_name + ".tmp."}) {
      if (name.rfind(prefix, 0) == 0) remove = temp_of_dead_writer(name.substr(prefix.size()));
    }
    if (name.rfind(index_name + ".", 0) == 0) {
      const std::string rest = name.substr(index_name.size() + 1);
      const std::string id = rest.substr(0, kIdSize);
      if (is_index_id(id)) {
        if (rest.size() == kIdSize) {
          // A pending index that never became the bank's: its save was killed before the commit.
          remove = !(current && *current == id);
        } else if (rest.compare(kIdSize, 5, ".tmp.") == 0) {
          remove = temp_of_dead_writer(rest.substr(kIdSize + 5));
        }
      }
    }
    if (remove) fs::remove(entry.path(), ec);
  }
}

std::shared_ptr<IndexedBank> IndexedBank::load(const std::string& path, const IndexConfig& config) {
  // The index file beside the bank is read while the bank is, each in its own child process
  // (docs/reliability.md): it is the file used unless a killed save left a pending one.
  std::optional<PendingIndexRead> early;
  if (is_file(path) && is_file(index_path_for(path))) early.emplace(index_path_for(path));
  Bank bank = read_bank(path);
  const std::string id = read_bank_index_id(path).value_or("");
  std::string index_path = index_path_for(path);
  const bool present = path_exists(index_path);
  const std::string bound_to = present ? read_index_binding(index_path) : "";
  if (!id.empty() && bound_to != id) {
    // A save killed between its commit (the bank rename) and the index rename.
    const std::string pending = pending_index_path(index_path, id);
    if (is_file(pending)) {
      index_path = pending;
    } else if (present) {
      // No trailer: a truncated or damaged file says so first (its own, more precise error).
      if (bound_to.empty()) {
        KeyIndex::load(index_path, bank.keys.data_ptr<float>(), bank.size(), bank.meta.key_dim,
                       IndexConfig{});
      }
      KVT_THROW("index ", index_path, " is not the index of ", path, " (the bank names index id ",
                id, ", the file ", bound_to.empty() ? "has none" : "has " + bound_to,
                "): it is stale or belongs to another bank; remove it and kvtune rebuilds the "
                "index from the bank's keys");
    }
  } else if (id.empty() && !bound_to.empty()) {
    KVT_THROW("index ", index_path, " belongs to another bank or another version of ", path,
              " (it records index id ", bound_to,
              ", the bank none): remove it and kvtune rebuilds the index from the bank's keys");
  }
  if (!path_exists(index_path)) {
    IndexConfig built = config;
    if (!bank.meta.index_factory.empty() && config.is_flat())
      built.factory = bank.meta.index_factory;
    return std::make_shared<IndexedBank>(std::move(bank), built);
  }
  // Keys must stay where the index (Flat) points: construct first, then swap in the index.
  IndexConfig params = config;
  if (!bank.meta.index_factory.empty()) params.factory = bank.meta.index_factory;
  auto result = std::make_shared<IndexedBank>(std::move(bank), IndexConfig{});
  KeyIndex::StoredKeys stored = KeyIndex::StoredKeys::kUnknown;
  const float* keys = result->bank_.keys.data_ptr<float>();
  const int64_t n = result->bank_.size(), dim = result->bank_.keys.size(1);
  result->index_ =
      std::make_unique<KeyIndex>(early && early->path() == index_path
                                     ? KeyIndex::load(*early, keys, n, dim, params, &stored)
                                     : KeyIndex::load(index_path, keys, n, dim, params, &stored));
  if (id.empty()) {
    // A bank written before banks were bound to their index: the index is accepted when the
    // vectors it stores are the bank's keys, with a note when it cannot tell (PQ codes).
    KVT_CHECK(stored != KeyIndex::StoredKeys::kDiffer, "index ", index_path,
              " does not hold the keys of ", path,
              ": it is stale or belongs to another bank; remove it and kvtune rebuilds the index "
              "from the bank's keys");
    if (stored == KeyIndex::StoredKeys::kUnknown) {
      std::cerr << "note: " << path << " records no index id (written by an older kvtune) and "
                << index_path
                << " stores compressed codes, so it cannot be checked against the keys; "
                   "rewrite the bank (e.g. bank compact --keep 1) to bind them\n";
    }
  }
  result->config_ = result->index_->config();
  result->bank_.meta.index_factory = result->config_.factory;
  return result;
}

void IndexedBank::save(const std::string& path) const {
  // docs/bank-format.md, "The faiss index beside the bank": the index is written under a name of
  // its own (x.faiss.<id>), then the bank naming that id is renamed into place (the commit),
  // then the index is renamed to x.faiss. A kill at any moment leaves the old pair or the new.
  clean_bank_leftovers(path);
  const std::string id = new_index_id();
  const std::string index_path = index_path_for(path);
  const std::string pending = pending_index_path(index_path, id);
  {
    AtomicOutput index_out(pending);
    index_->save(index_out.temp_path());
    append_trailer(index_out.temp_path(), id);
    sync_path(index_out.temp_path());
    index_out.commit();
  }
  crash_point("bank-save-index-written");
  try {
    write_bank(path, bank_, id);  // temp + fsync + rename: the commit
  } catch (...) {
    std::error_code ec;
    fs::remove(pending, ec);
    throw;
  }
  sync_folder(path);
  crash_point("bank-save-committed");
  KVT_CHECK(std::rename(pending.c_str(), index_path.c_str()) == 0, "cannot move ", pending, " to ",
            index_path, ": ", std::strerror(errno));
  sync_folder(index_path);
}

void IndexedBank::set_trainable(bool trainable) {
  bank_.meta.trainable = trainable;
  bank_.keys.set_requires_grad(trainable);
  bank_.values.set_requires_grad(trainable);
}

void IndexedBank::rebuild_index() {
  auto index = std::make_unique<KeyIndex>(bank_.keys.size(1), config_);
  index->build(bank_.keys.data_ptr<float>(), bank_.size());
  index_ = std::move(index);
  steps_since_build_ = 0;
}

void IndexedBank::after_update(const torch::Tensor& touched_rows) {
  torch::NoGradGuard no_grad;
  if (touched_rows.defined() && touched_rows.numel() > 0) {
    auto rows = bank_.keys.index_select(0, touched_rows);
    rows = rows / rows.norm(2, 1, true).clamp_min(1e-12);
    bank_.keys.index_copy_(0, touched_rows, rows);
  }
  ++steps_since_build_;
  if (index_->needs_rebuild(steps_since_build_)) rebuild_index();
}

void IndexedBank::record_usage(const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const auto valid = rows.reshape({-1});
  const auto kept = valid.index_select(0, torch::nonzero(valid >= 0).reshape({-1}));
  bank_.usage.index_add_(0, kept, torch::ones_like(kept));
}

BankView IndexedBank::view() const {
  return BankView{bank_.keys, bank_.values, index_.get(), bank_.meta.name};
}

}  // namespace kvtune

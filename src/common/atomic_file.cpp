#include "common/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {

std::string atomic_temp_path(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

namespace {

bool writer_alive(long pid) {
  if (pid <= 0) return false;
  if (pid == ::getpid()) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

void remove_dead_writers_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(parent, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code rm;
    if (!writer_alive(std::stol(pid))) fs::remove(it->path(), rm);
  }
}

void write_file_bytes(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KVT_CHECK(fd >= 0, "cannot write ", path, ": ", std::strerror(errno),
            ": check the folder is writable");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;
      ::close(fd);
      KVT_THROW("cannot write ", path, ": ", std::strerror(err), " after ", done, " of ",
                bytes.size(), " bytes: check the folder has space");
    }
    done += static_cast<size_t>(w);
  }
  const bool synced = ::fsync(fd) == 0;
  const int sync_err = errno;
  const bool closed = ::close(fd) == 0;
  KVT_CHECK(synced && closed, "cannot write ", path, ": ", std::strerror(synced ? errno : sync_err),
            ": check the folder has space");
}

AtomicOutput::AtomicOutput(std::string path)
    : path_(std::move(path)), temp_(atomic_temp_path(path_)) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path_).parent_path();
  KVT_CHECK(parent.empty() || is_folder(parent), "cannot write ", path_, ": folder ",
            parent.string(), " does not exist (create it first)");
  KVT_CHECK(!is_folder(path_), "cannot write ", path_, ": it is a folder (give a file name)");
  remove_dead_writers_temps(path_);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);  // best effort: never throw from a destructor
  }
}

void AtomicOutput::commit() {
  KVT_CHECK(std::rename(temp_.c_str(), path_.c_str()) == 0, "cannot move ", temp_, " to ", path_,
            ": ", std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicOutput out(path);
  write_file_bytes(out.temp_path(), contents);
  out.commit();
}

}  // namespace kvtune

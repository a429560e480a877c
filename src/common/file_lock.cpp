#include "common/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "common/check.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

double default_timeout() {
  if (const char* s = std::getenv("KVTUNE_LOCK_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    KVT_CHECK(end != s && *end == '\0' && v >= 0, "KVTUNE_LOCK_TIMEOUT='", s,
              "' is not a number of seconds >= 0");
    return v;
  }
  return 600;
}

std::string holder_of(int fd) {
  char buf[64] = {0};
  const ssize_t got = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (got <= 0) return "another kvtune process";
  std::string s(buf, static_cast<size_t>(got));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return "kvtune process " + s;
}

}  // namespace

FileLock::FileLock(const std::string& target, double timeout_s) : lock_path_(target + ".lock") {
  if (timeout_s < 0) timeout_s = default_timeout();
  {
    const std::filesystem::path parent = std::filesystem::path(target).parent_path();
    std::error_code ec;
    KVT_CHECK(parent.empty() || std::filesystem::is_directory(parent, ec), "cannot write ", target,
              ": folder ", parent.string(), " does not exist (create it first)");
  }
  fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  KVT_CHECK(fd_ >= 0, "cannot open lock file ", lock_path_, " (", std::strerror(errno),
            "): check the folder is writable");
  const auto start = std::chrono::steady_clock::now();
  bool said = false;
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      ::close(fd_);
      KVT_THROW("cannot lock ", lock_path_, ": ", std::strerror(err));
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited >= timeout_s) {
      const std::string holder = holder_of(fd_);
      ::close(fd_);
      KVT_THROW(target, " is being written by ", holder, " (lock ", lock_path_, "); gave up after ",
                timeout_s, " s: wait for it to finish, or set KVTUNE_LOCK_TIMEOUT to wait longer");
    }
    if (!said) {
      std::cerr << "waiting for " << target << ": it is being written by " << holder_of(fd_)
                << " (lock " << lock_path_ << ", up to " << timeout_s << " s)\n";
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Who holds it, for the messages of the writers that wait.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t w = ::pwrite(fd_, pid.data(), pid.size(), 0);
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

std::vector<std::unique_ptr<FileLock>> lock_all(std::vector<std::string> targets) {
  std::vector<std::pair<std::string, std::string>> keyed;
  for (auto& t : targets) {
    std::error_code ec;
    auto canon = fs::weakly_canonical(fs::absolute(t), ec);
    keyed.emplace_back(ec ? t : canon.string(), t);
  }
  std::sort(keyed.begin(), keyed.end());
  keyed.erase(std::unique(keyed.begin(), keyed.end(),
                          [](const auto& a, const auto& b) { return a.first == b.first; }),
              keyed.end());
  std::vector<std::unique_ptr<FileLock>> locks;
  for (const auto& k : keyed) locks.push_back(std::make_unique<FileLock>(k.second));
  return locks;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) {
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  }
  std::error_code ea, eb;
  const auto ca = fs::weakly_canonical(fs::absolute(a), ea);
  const auto cb = fs::weakly_canonical(fs::absolute(b), eb);
  return !ea && !eb && ca == cb;
}

void refuse_output_equal_to_input(const std::string& out, const std::vector<std::string>& inputs,
                                  const std::string& option) {
  for (const auto& in : inputs) {
    KVT_CHECK(!same_file(out, in), option, " ", out, " is the input ", in,
              ": writing it would replace the input; give another output file");
  }
}

void crash_point(const char* point) {
  const char* at = std::getenv("KVTUNE_TEST_CRASH_AT");
  if (at != nullptr && std::strcmp(at, point) == 0) {
    std::cerr << "KVTUNE_TEST_CRASH_AT=" << point << ": killing this process\n" << std::flush;
    std::raise(SIGKILL);
  }
}

}  // namespace kvtune

// Coordination of processes that write the same file, and guards against writing an input.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace kvtune {

// An advisory lock (flock) on `target` + ".lock", held for the object's lifetime. Every kvtune
// command that writes a bank (remember, bank create/merge/compact/export) takes one on its
// output, so two writers of one bank run one after the other and neither update is lost. A
// second writer waits, saying so on stderr, up to `timeout_s` seconds (default: the environment
// variable KVTUNE_LOCK_TIMEOUT, else 600), then fails with an error naming the lock file. The
// lock file is left in place (removing it would let two writers lock different files).
class FileLock {
 public:
  explicit FileLock(const std::string& target, double timeout_s = -1);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  const std::string& lock_path() const { return lock_path_; }

 private:
  std::string lock_path_;
  int fd_ = -1;
};

// Locks several targets in one fixed order (by canonical path), so that two commands locking the
// same files never deadlock. Duplicates are locked once.
std::vector<std::unique_ptr<FileLock>> lock_all(std::vector<std::string> targets);

// True when `a` and `b` name the same file: the same inode when both exist (hard links and
// symlinks included), else the same canonical path.
bool same_file(const std::string& a, const std::string& b);

// Throws kvtune::Error when the output `out` (of option `option`, e.g. "--out") is one of
// `inputs`: writing it would replace an input before (or while) it is read.
void refuse_output_equal_to_input(const std::string& out, const std::vector<std::string>& inputs,
                                  const std::string& option = "--out");

// Test hook: when the environment variable KVTUNE_TEST_CRASH_AT equals `point`, the process
// kills itself with SIGKILL there (a crash at that exact moment). Used by the tests of what a
// kill between two renames leaves behind; a no-op otherwise.
void crash_point(const char* point);

}  // namespace kvtune

// Writing outputs to a temporary name and renaming them into place only when complete, so that
// a failed or interrupted write never damages an existing file.
#pragma once

#include <string>

namespace kvtune {

// The temporary name used while `path` is being written (same folder, so rename is atomic):
// "<path>.tmp.<pid>".
std::string atomic_temp_path(const std::string& path);

// Removes the temporary files "<path>.tmp.<pid>" of writers that are no longer running (a kill
// mid-write leaves one behind). AtomicOutput calls it, so the next write of `path` cleans up.
void remove_dead_writers_temps(const std::string& path);

// Writes `bytes` to `path` with plain POSIX calls and fsyncs it. A failure (disk full, a file
// size limit, a read-only folder) is a kvtune::Error naming the path, the system's reason and
// how far the write got; the partial file is left for the caller (AtomicOutput) to remove.
void write_file_bytes(const std::string& path, const std::string& bytes);

// Usage:
//   AtomicOutput out(path);
//   write_everything(out.temp_path());
//   out.commit();   // renames temp -> path
// If commit() is never reached (an exception), the destructor removes the temporary file.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }
  void commit();

 private:
  std::string path_;
  std::string temp_;
  bool committed_ = false;
};

// Writes `contents` to `path` atomically (write_file_bytes to the temporary name, then rename).
// Libraries whose writers can fail inside a destructor (libtorch's archive writer terminates the
// process on a full disk) serialize to memory first and write through this.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace kvtune

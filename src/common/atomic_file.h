// Writing outputs to a temporary name and renaming them into place only when complete, so that
// a failed or interrupted write never damages an existing file.
#pragma once

#include <string>

namespace kvtune {

// The temporary name used while `path` is being written (same folder, so rename is atomic).
std::string atomic_temp_path(const std::string& path);

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

// Writes `contents` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace kvtune

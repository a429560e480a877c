// Running a step that hands untrusted bytes to a library in a child process. HDF5 1.10 has
// memory errors on some damaged files (a use-after-free in its object-header code, found by
// tests/fuzz/fuzz_bank_reader): what it does there must not crash or corrupt the process that
// asked. isolated_call forks, runs `work` in the child and returns what `work` returned, sent
// back through a pipe.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace kvtune {

// Runs `work` in a forked child and returns its result. A kvtune::Error thrown in the child is
// thrown again here with the same message. A child that dies (a signal, a sanitizer report, any
// exit without a result) becomes a kvtune::Error "<what> could not be read: the library reading
// it crashed (...): the file is damaged; restore a copy or write it again". A child still busy
// after `timeout_s` seconds is killed (HDF5 loops forever on some damaged files), which is an
// error too. `work` must not need threads (OpenMP is set to one thread in the child). Several
// threads may call isolated_call and isolated_call_bulk at once (each gets its own child's
// result); the child of a fork beside busy threads inherits their locks, which glibc's allocator
// resets and clang 14's ASan allocator does not, so kvtune itself forks from one thread only.
std::string isolated_call(const std::function<std::string()>& work, const std::string& what,
                          double timeout_s);

// Bytes a child of isolated_call_bulk wrote, mapped into this process privately: reading them
// copies nothing, writing to them copies only the pages written (copy-on-write). Tensors may
// point into them (torch::from_blob with a deleter that holds the shared_ptr).
class SharedBytes {
 public:
  SharedBytes(char* data, size_t size) : data_(data), size_(size) {}
  ~SharedBytes();
  SharedBytes(const SharedBytes&) = delete;
  SharedBytes& operator=(const SharedBytes&) = delete;
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_;
  size_t size_;
};

// Where the child of isolated_call_bulk writes its large output: a memory file shared with the
// parent, so that nothing large goes through the pipe.
class BulkSink {
 public:
  explicit BulkSink(int fd) : fd_(fd) {}
  // Appends `n` bytes at an offset that is a multiple of 64 and returns that offset.
  size_t append(const void* data, size_t n);
  // Appends bytes at the current end, with no alignment (a serializer's stream).
  void write(const void* data, size_t n);
  size_t size() const { return size_; }

 private:
  int fd_;
  size_t size_ = 0;
};

struct IsolatedResult {
  std::string answer;                 // what `work` returned
  std::shared_ptr<SharedBytes> bulk;  // what it wrote to its BulkSink (size 0 when nothing)
};

// isolated_call for a step whose result is large: `work` writes the bulk of it to `sink` (a
// memory file) and returns a short answer; both come back here, the bulk mapped, not copied.
IsolatedResult isolated_call_bulk(const std::function<std::string(BulkSink& sink)>& work,
                                  const std::string& what, double timeout_s);

// isolated_call_bulk in two steps, so that this process does other work (another isolated call)
// while the child works, with no thread of its own: a fork from a process whose other threads
// are busy can leave the child stuck on a lock one of them held (ASan's allocator has no fork
// handler in clang 14). The constructor forks the child; finish() waits for it and returns what
// isolated_call_bulk returns, or throws what it throws (once). A call never finished has its
// child killed by the destructor. The timeout counts from the fork.
class PendingBulkCall {
 public:
  PendingBulkCall(const std::function<std::string(BulkSink& sink)>& work, const std::string& what,
                  double timeout_s);
  ~PendingBulkCall();
  PendingBulkCall(const PendingBulkCall&) = delete;
  PendingBulkCall& operator=(const PendingBulkCall&) = delete;
  IsolatedResult finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The time a read of the file `path` may take in isolated_call: 60 s plus its size at 20 MB/s,
// or the environment variable KVTUNE_READ_TIMEOUT (seconds) when set.
double read_timeout_seconds(const std::string& path);

}  // namespace kvtune

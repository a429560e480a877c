#include "common/isolated_call.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>

#include <omp.h>

#include "common/check.h"
#include "common/resources.h"

namespace kvtune {
namespace {

// The child's answer: one status byte, then the result or the error message.
constexpr char kOk = 'R';
constexpr char kError = 'E';
constexpr char kInternal = 'I';

bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Several threads may read files at once (a bank and its index). A child inherits every
// descriptor open at its fork: one holding another call's pipe write end would keep that call
// from seeing its own child's end until both children are gone. The write end exists in this
// process only from pipe() to the close after fork(), and both hold this lock, so no other
// child can inherit it.
std::mutex fork_mutex;

}  // namespace

double read_timeout_seconds(const std::string& path) {
  if (const char* env = std::getenv("KVTUNE_READ_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && v > 0) return v;
  }
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  return 60.0 + (ec ? 0.0 : static_cast<double>(bytes) / 20e6);
}

namespace {

// A forked child at work, and what waiting for it needs.
struct Child {
  pid_t pid = -1;
  int read_fd = -1;  // the read end of the pipe that carries its answer
  std::string what;
  double timeout_s = 0;
  std::chrono::steady_clock::time_point deadline;
};

// Forks the child that runs `work` (`bulk_fd` >= 0 is a memory file it writes its bulk to).
Child start_child(const std::function<std::string(BulkSink*)>& work, const std::string& what,
                  double timeout_s, int bulk_fd) {
  int fds[2];
  std::unique_lock<std::mutex> lock(fork_mutex);
  KVT_CHECK(::pipe(fds) == 0, "cannot read ", what, ": pipe failed: ", std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    KVT_THROW("cannot read ", what, ": fork failed: ", std::strerror(err));
  }
  if (pid == 0) {
    ::close(fds[0]);
    lock.unlock();  // this thread's, copied locked: a nested isolated call may take it
    // The parent's OpenMP thread pool does not exist here: stay on this thread (torch's
    // parallel_for runs inline when OpenMP offers one thread).
    omp_set_num_threads(1);
    std::string answer;
    try {
      BulkSink sink(bulk_fd);
      answer = kOk + work(bulk_fd >= 0 ? &sink : nullptr);
    } catch (const Error& e) {
      answer = kError + std::string(e.what());
    } catch (const std::exception& e) {
      const auto oom = out_of_memory_message(e);
      answer = oom.empty() ? kInternal + std::string(e.what()) : kError + oom;
    } catch (...) {
      answer = kInternal + std::string("unknown exception");
    }
    const bool sent = write_all(fds[1], answer.data(), answer.size());
    ::close(fds[1]);
    ::_exit(sent ? 0 : 3);
  }
  ::close(fds[1]);
  lock.unlock();
  Child child;
  child.pid = pid;
  child.read_fd = fds[0];
  child.what = what;
  child.timeout_s = timeout_s;
  child.deadline = std::chrono::steady_clock::now() +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(timeout_s));
  return child;
}

// Kills a child that is still at work and reaps it (a call given up).
void abandon_child(Child& child) {
  if (child.read_fd >= 0) ::close(child.read_fd);
  child.read_fd = -1;
  if (child.pid > 0) {
    ::kill(child.pid, SIGKILL);
    int ignored = 0;
    while (::waitpid(child.pid, &ignored, 0) < 0 && errno == EINTR) {
    }
  }
  child.pid = -1;
}

// Waits for the child's answer (until its deadline) and returns what `work` returned.
std::string finish_child(Child& child) {
  std::string answer;
  char buf[1 << 16];
  bool timed_out = false;
  for (;;) {
    const double left =
        std::chrono::duration<double>(child.deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{child.read_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min(left * 1000.0 + 1, 60000.0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;
    const ssize_t r = ::read(child.read_fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    answer.append(buf, static_cast<size_t>(r));
  }
  if (timed_out) {
    abandon_child(child);
    KVT_THROW(child.what, " could not be read: the library reading it did not finish within ",
              child.timeout_s,
              " s: the file is damaged (restore a copy or write it again), or it is "
              "very large on a slow disk (set KVTUNE_READ_TIMEOUT to wait longer, in seconds)");
  }
  ::close(child.read_fd);
  child.read_fd = -1;
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  child.pid = -1;
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !answer.empty();
  if (!clean) {
    std::string how = WIFSIGNALED(status)
                          ? std::string("signal ") + std::to_string(WTERMSIG(status)) + ", " +
                                strsignal(WTERMSIG(status))
                          : "exit status " + std::to_string(WEXITSTATUS(status));
    KVT_THROW(child.what, " could not be read: the library reading it crashed (", how,
              "): the file is damaged; restore a copy or write it again");
  }
  const char kind = answer[0];
  answer.erase(0, 1);
  if (kind == kError) throw Error(answer);
  KVT_CHECK(kind == kOk, child.what, ": internal error while reading it: ", answer);
  return answer;
}

}  // namespace

std::string isolated_call(const std::function<std::string()>& work, const std::string& what,
                          double timeout_s) {
  Child child = start_child([&](BulkSink*) { return work(); }, what, timeout_s, -1);
  return finish_child(child);
}

SharedBytes::~SharedBytes() {
  if (size_ > 0) ::munmap(data_, size_);
}

size_t BulkSink::append(const void* data, size_t n) {
  static const char zeros[64] = {};
  const size_t pad = (64 - size_ % 64) % 64;
  write(zeros, pad);
  const size_t at = size_;
  write(data, n);
  return at;
}

void BulkSink::write(const void* data, size_t n) {
  KVT_CHECK(write_all(fd_, static_cast<const char*>(data), n),
            "cannot pass a result to the reading process: writing to its memory file failed: ",
            std::strerror(errno));
  size_ += n;
}

struct PendingBulkCall::State {
  int bulk_fd = -1;
  Child child;
};

PendingBulkCall::PendingBulkCall(const std::function<std::string(BulkSink& sink)>& work,
                                 const std::string& what, double timeout_s)
    : state_(std::make_unique<State>()) {
  state_->bulk_fd = ::memfd_create("kvtune-isolated", MFD_CLOEXEC);
  KVT_CHECK(state_->bulk_fd >= 0, "cannot read ", what,
            ": memfd_create failed: ", std::strerror(errno));
  try {
    state_->child =
        start_child([&](BulkSink* sink) { return work(*sink); }, what, timeout_s, state_->bulk_fd);
  } catch (...) {
    ::close(state_->bulk_fd);
    throw;
  }
}

PendingBulkCall::~PendingBulkCall() {
  abandon_child(state_->child);
  if (state_->bulk_fd >= 0) ::close(state_->bulk_fd);
}

IsolatedResult PendingBulkCall::finish() {
  KVT_CHECK(state_->child.pid > 0, "internal error: isolated call ", state_->child.what,
            " was finished already");
  const std::string what = state_->child.what;
  IsolatedResult result;
  result.answer = finish_child(state_->child);
  // The memory file is closed here, whatever follows: its pages live on in the mapping only.
  struct Closer {
    int& fd;
    ~Closer() {
      ::close(fd);
      fd = -1;
    }
  } closer{state_->bulk_fd};
  const int fd = state_->bulk_fd;
  struct stat st {};
  KVT_CHECK(::fstat(fd, &st) == 0, "cannot read ", what,
            ": fstat of its memory file failed: ", std::strerror(errno));
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    result.bulk = std::make_shared<SharedBytes>(nullptr, 0);
    return result;
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  KVT_CHECK(p != MAP_FAILED, "cannot read ", what, ": mapping its ", size,
            " bytes failed: ", std::strerror(errno));
  result.bulk = std::make_shared<SharedBytes>(static_cast<char*>(p), size);
  return result;
}

IsolatedResult isolated_call_bulk(const std::function<std::string(BulkSink& sink)>& work,
                                  const std::string& what, double timeout_s) {
  return PendingBulkCall(work, what, timeout_s).finish();
}

}  // namespace kvtune

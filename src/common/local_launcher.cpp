#include "common/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/check.h"

extern char** environ;

namespace kvtune {
namespace {

volatile sig_atomic_t g_forward_signal = 0;

void remember_signal(int sig) {
  g_forward_signal = sig;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

}  // namespace

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  KVT_CHECK(fd >= 0, "cannot open a socket to find a free port: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  close(fd);
  KVT_CHECK(ok, "cannot find a free port on 127.0.0.1: ", std::strerror(err));
  return ntohs(a.sin_port);
}

int launch_local(const LocalLaunch& l) {
  KVT_CHECK(l.nproc >= 1 && l.nproc <= 256, "--nproc ", l.nproc, ": give 1 to 256 processes");
  KVT_CHECK(std::getenv("WORLD_SIZE") == nullptr && std::getenv("RANK") == nullptr,
            "--nproc starts its own ranks, but WORLD_SIZE or RANK is already set (a launcher "
            "such as torchrun sets them): drop --nproc, or unset WORLD_SIZE and RANK");
  const std::string port = std::to_string(free_local_port());

  // argv and environment of every rank, built before the first fork.
  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string v = *e;
    const auto key = v.substr(0, v.find('='));
    if (key == "MASTER_ADDR" || key == "MASTER_PORT" || key == "WORLD_SIZE" || key == "RANK" ||
        key == "LOCAL_RANK" || key == "LOCAL_WORLD_SIZE")
      continue;
    base_env.push_back(v);
  }
  struct Child {
    pid_t pid = -1;
    bool done = false;
    int status = 0;
  };
  std::vector<Child> children(static_cast<size_t>(l.nproc));
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  auto kill_all = [&](int sig) {
    for (auto& c : children)
      if (c.pid > 0 && !c.done) kill(c.pid, sig);
  };
  for (int r = 0; r < l.nproc; ++r) {
    std::vector<std::string> env = base_env;
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + port);
    env.push_back("WORLD_SIZE=" + std::to_string(l.nproc));
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(l.nproc));
    std::vector<char*> envp, argv;
    for (auto& v : env) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::string prog = l.program;
    argv.push_back(prog.data());
    std::vector<std::string> args = l.args;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      execve(prog.c_str(), argv.data(), envp.data());
      std::fprintf(stderr, "kvtune: cannot start rank %d (%s): %s\n", r, prog.c_str(),
                   std::strerror(errno));
      _exit(127);
    }
    if (pid < 0) {
      const int err = errno;
      kill_all(SIGKILL);
      for (auto& c : children)
        if (c.pid > 0) waitpid(c.pid, nullptr, 0);
      KVT_THROW("cannot start rank ", r, ": ", std::strerror(err));
    }
    children[static_cast<size_t>(r)].pid = pid;
  }

  int result = 0, running = l.nproc, forwarded = 0;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (g_forward_signal != 0 && forwarded != g_forward_signal) {
      forwarded = g_forward_signal;
      kill_all(forwarded);
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t r = 0; r < children.size(); ++r) {
        auto& c = children[r];
        if (c.pid != pid) continue;
        c.done = true;
        c.status = status;
        --running;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok) {
          std::fprintf(stderr, "kvtune: rank %zu of %d (pid %d) %s\n", r, l.nproc,
                       static_cast<int>(pid), describe_status(status).c_str());
          if (!failed) {
            failed = true;
            result = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
            deadline = std::chrono::steady_clock::now() + l.grace;
          }
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (failed && std::chrono::steady_clock::now() > deadline) {
      for (size_t r = 0; r < children.size(); ++r) {
        if (!children[r].done) {
          std::fprintf(stderr, "kvtune: rank %zu still running %lld s after rank failed: killed\n",
                       r, static_cast<long long>(l.grace.count() / 1000));
        }
      }
      kill_all(SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (forwarded != 0 && result == 0) result = 128 + forwarded;
  return result;
}

}  // namespace kvtune

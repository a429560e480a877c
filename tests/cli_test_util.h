// Running the kvtune program from tests: its exit code and everything it printed.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace kvtune::test {

struct Run {
  int code;
  std::string output;  // stdout and stderr together
};

inline Run run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed: " + command};
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// build/kvtune ARGS
inline Run kvtune(const std::string& args) {
  return run_command(std::string(KVTUNE_BINARY_DIR) + "/kvtune " + args);
}

}  // namespace kvtune::test

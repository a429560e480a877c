// Starting the ranks of a run on this machine (`kvtune pretrain|finetune ... --nproc N`): N copies
// of a program, each with the variables a torchrun-style launcher sets (MASTER_ADDR=127.0.0.1,
// a free MASTER_PORT, WORLD_SIZE=N, RANK, LOCAL_RANK), supervised until all exit.
//   - Every rank prints to this process's stdout and stderr.
//   - When a rank fails (non-zero exit or a signal), the launcher says which and how, gives the
//     others `grace` to fail on their own (their collectives time out or see the closed
//     connections), then kills those still running.
//   - SIGINT and SIGTERM to the launcher are passed on to every rank.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace kvtune {

struct LocalLaunch {
  std::string program;            // path of the executable (the launcher's own: /proc/self/exe)
  std::vector<std::string> args;  // argv[1..] of every rank
  int nproc = 2;
  std::chrono::milliseconds grace{std::chrono::seconds(330)};
};

// Returns 0 when every rank exited 0, else the first failed rank's exit status (1 for a rank
// killed by a signal). Throws kvtune::Error when the ranks cannot be started or when WORLD_SIZE
// or RANK is already set (a launcher inside a launcher).
int launch_local(const LocalLaunch& launch);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
int free_local_port();

}  // namespace kvtune

// Where a process stands in a multi-process run: its rank, the world size and the rendezvous
// address, read from the environment variables torchrun and SLURM scripts set (MASTER_ADDR,
// MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK; docs/distributed.md). Validated before any work:
// a missing or malformed variable, a rank outside the world, or a world without an address is
// an error that names the variable and the fix.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace kvtune {

struct LaunchSettings {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  // Processes of this run on this machine (LOCAL_WORLD_SIZE, as torchrun and `--nproc` set it;
  // 1 when unset): they share its cores (common/threads.h).
  int local_world_size = 1;
  std::string master_addr;  // host of the rendezvous store (rank 0 runs it)
  int master_port = 0;
  // How long a rank waits for the others: at the rendezvous, and in every collective (a rank
  // that hangs makes the others fail after this long; one that dies, as soon as its connections
  // close).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  bool distributed() const { return world_size > 1; }
};

// The environment, one variable at a time (std::getenv by default; tests pass their own).
using EnvLookup = std::function<const char*(const char*)>;

// Single process (world size 1) when none of WORLD_SIZE and RANK is set. Otherwise WORLD_SIZE,
// RANK, MASTER_ADDR and MASTER_PORT must all be set and valid; LOCAL_RANK defaults to RANK,
// LOCAL_WORLD_SIZE to 1.
LaunchSettings launch_settings_from_env(const EnvLookup& env = {});

// "rank 1 of 2 (local rank 1), rendezvous 127.0.0.1:29500": for messages.
std::string describe(const LaunchSettings& s);

}  // namespace kvtune

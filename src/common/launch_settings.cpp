#include "common/launch_settings.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "common/check.h"

namespace kvtune {
namespace {

// An integer variable in [lo, hi]; the message names the variable, the value and the range.
int int_var(const char* name, const char* value, long lo, long hi) {
  KVT_CHECK(value != nullptr && *value != '\0', name, " is not set: a multi-process run needs ",
            "WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT (docs/distributed.md), or use ",
            "--nproc N to start N local processes");
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  KVT_CHECK(errno == 0 && end != value && *end == '\0', name, "='", value,
            "' is not an integer: give a whole number from ", lo, " to ", hi);
  KVT_CHECK(v >= lo && v <= hi, name, "=", v, " is out of range: give a whole number from ", lo,
            " to ", hi);
  return static_cast<int>(v);
}

}  // namespace

LaunchSettings launch_settings_from_env(const EnvLookup& lookup) {
  const EnvLookup env = lookup ? lookup : EnvLookup([](const char* n) { return std::getenv(n); });
  LaunchSettings s;
  const char* world = env("WORLD_SIZE");
  const char* rank = env("RANK");
  if (world == nullptr && rank == nullptr) return s;  // one process
  s.world_size = int_var("WORLD_SIZE", world, 1, 1 << 16);
  s.rank = int_var("RANK", rank, 0, 1 << 16);
  KVT_CHECK(s.rank < s.world_size, "RANK=", s.rank, " is not below WORLD_SIZE=", s.world_size,
            ": ranks are 0 to WORLD_SIZE - 1, one per process");
  const char* local = env("LOCAL_RANK");
  s.local_rank = local == nullptr ? s.rank : int_var("LOCAL_RANK", local, 0, s.world_size - 1);
  const char* local_world = env("LOCAL_WORLD_SIZE");
  s.local_world_size =
      local_world == nullptr ? 1 : int_var("LOCAL_WORLD_SIZE", local_world, 1, s.world_size);
  if (s.world_size == 1) return s;
  const char* addr = env("MASTER_ADDR");
  KVT_CHECK(addr != nullptr && *addr != '\0', "MASTER_ADDR is not set: give the host name or ",
            "address of the machine that runs rank 0 (docs/distributed.md)");
  s.master_addr = addr;
  s.master_port = int_var("MASTER_PORT", env("MASTER_PORT"), 1, 65535);
  return s;
}

std::string describe(const LaunchSettings& s) {
  return detail::concat("rank ", s.rank, " of ", s.world_size, " (local rank ", s.local_rank,
                        "), rendezvous ", s.master_addr, ":", s.master_port);
}

}  // namespace kvtune

#include "common/resources.h"

#include <sys/resource.h>

namespace kvtune {

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace kvtune

#include <unistd.h>

#include <cstdio>
#include <limits>
#include <new>

#include "common/check.h"

namespace kvtune {

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<int64_t>(pages) * page;
}

int64_t checked_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return -1;
  return a * b;
}

void check_fits_in_memory(int64_t bytes, const std::string& what, const std::string& fix) {
  const int64_t have = physical_memory_bytes();
  if (have <= 0) return;
  if (bytes >= 0 && bytes <= have) return;
  const auto gib = [](int64_t b) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f GiB", static_cast<double>(b) / (1 << 30));
    return std::string(buf);
  };
  KVT_THROW(what, " needs ", bytes < 0 ? std::string("more than 2^63 bytes") : gib(bytes),
            "; this machine has ", gib(have), " of memory: ", fix);
}

}  // namespace kvtune

namespace kvtune {

std::string out_of_memory_message(const std::exception& e) {
  std::string what;
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
    what = "an allocation failed";
  } else {
    // libtorch 1.13: "[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't
    // allocate memory: you tried to allocate N bytes. Error code 12 (...)"; 2.x: "...
    // DefaultCPUAllocator: not enough memory: you tried to allocate N bytes." Then a backtrace.
    const std::string text = e.what();
    const auto at = text.find("DefaultCPUAllocator: ");
    if (at == std::string::npos) return "";
    what = text.substr(at + 21, text.find('\n', at) - (at + 21));
  }
  return "out of memory (" + what +
         "): this process may not hold that much (the machine's memory, or a limit such as "
         "ulimit -d or -v): give it more, or use smaller banks or batches; a base bank can be "
         "split over several processes (train.shard_base_banks, docs/distributed.md)";
}

}  // namespace kvtune

// What the process has used so far, for reports and benchmarks.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

namespace kvtune {

// Peak resident set size of this process, in bytes (getrusage ru_maxrss).
int64_t peak_rss_bytes();

}  // namespace kvtune

namespace kvtune {

// Physical memory of the machine in bytes (sysconf), or 0 when it cannot be read.
int64_t physical_memory_bytes();

// `a * b` in bytes, or -1 when it overflows int64 (either < 0 counts as overflow).
int64_t checked_mul(int64_t a, int64_t b);

// Throws kvtune::Error when `bytes` (-1: overflowed) is more than the machine's physical memory:
// "<what> needs 7450.6 GiB (<detail>); this machine has 125.3 GiB of memory: <fix>".
void check_fits_in_memory(int64_t bytes, const std::string& what, const std::string& fix);

}  // namespace kvtune

namespace kvtune {

// When `e` says that an allocation failed (std::bad_alloc, or libtorch's CPU allocator's error,
// whose text carries a backtrace), a one-line error that names the fix; otherwise "".
std::string out_of_memory_message(const std::exception& e);

}  // namespace kvtune

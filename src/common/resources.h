// What the process has used so far, for reports and benchmarks.
#pragma once

#include <cstdint>

namespace kvtune {

// Peak resident set size of this process, in bytes (getrusage ru_maxrss).
int64_t peak_rss_bytes();

}  // namespace kvtune

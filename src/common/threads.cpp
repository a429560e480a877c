#include "common/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <thread>

#include <torch/torch.h>

namespace kvtune {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {
int local_processes = 1;
}  // namespace

void set_local_processes(int n) {
  local_processes = n > 0 ? n : 1;
}

void set_num_threads(int n) {
  if (n <= 0) n = std::max(1, available_cores() / local_processes);
  omp_set_num_threads(n);
  torch::set_num_threads(n);
}

}  // namespace kvtune

// One place that sets how many threads libtorch and faiss (both OpenMP) use.
#pragma once

namespace kvtune {

// n <= 0 means "this process's share of the cores it may use": available_cores() divided by
// the processes of the run on this machine (set_local_processes; at least 1 thread). Ranks that
// each took every core would oversubscribe them, and OpenBLAS reserves 128 MiB per thread.
void set_num_threads(int n);
int available_cores();
// How many processes of this run share this machine's cores (LaunchSettings::local_world_size;
// 1 unless set). Takes effect at the next set_num_threads.
void set_local_processes(int n);

}  // namespace kvtune

// One place that sets how many threads libtorch and faiss (both OpenMP) use.
#pragma once

namespace kvtune {

// n <= 0 means "the cores this process may use".
void set_num_threads(int n);
int available_cores();

}  // namespace kvtune

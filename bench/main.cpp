// kvtune_bench: Google Benchmark programs (not tests: nothing here asserts). Threads are set
// once, as the kvtune program does. Write JSON with --benchmark_out=FILE.
#include <benchmark/benchmark.h>

#include "common/threads.h"

int main(int argc, char** argv) {
  kvtune::set_num_threads(0);
  ::benchmark::Initialize(&argc, argv);
  if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ::benchmark::RunSpecifiedBenchmarks();
  ::benchmark::Shutdown();
  return 0;
}

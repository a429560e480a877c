// Time to read each installed dictd corpus, with its size: the figures docs/data.md quotes.
//   build/kvtune_bench --benchmark_filter=DictdRead
#include <benchmark/benchmark.h>

#include <filesystem>

#include "data/dictd_reader.h"

namespace {

// Unicode code points in valid UTF-8 (the readers guarantee validity): non-continuation bytes.
size_t count_code_points(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

void DictdRead(benchmark::State& state, const char* name) {
  if (!std::filesystem::exists(kvtune::dictd_index_path(name))) {
    state.SkipWithError("dictionary not installed (apt-get install dict-NAME)");
    return;
  }
  size_t entries = 0, chars = 0, bytes = 0;
  for (auto _ : state) {
    const auto read = kvtune::read_dictd_named(name);
    entries = read.size();
    chars = bytes = 0;
    for (const auto& e : read) {
      chars += count_code_points(e.text);
      bytes += e.text.size();
    }
    benchmark::DoNotOptimize(read.data());
  }
  state.counters["entries"] = static_cast<double>(entries);
  state.counters["text_chars"] = static_cast<double>(chars);
  state.counters["text_bytes"] = static_cast<double>(bytes);
}

// Three iterations: these are whole-corpus reads of up to a second, a rough figure is enough.
BENCHMARK_CAPTURE(DictdRead, wn, "wn")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(DictdRead, foldoc, "foldoc")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(DictdRead, jargon, "jargon")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(DictdRead, elements, "elements")->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

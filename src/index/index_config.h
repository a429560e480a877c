// How a bank's keys are searched: a faiss factory string plus search parameters.
#pragma once

#include <cstdint>
#include <string>

namespace kvtune {

struct IndexConfig {
  // faiss factory string over unit keys with inner product: "Flat", "IVF256,Flat", "HNSW32",
  // "IVF1024,PQ16", ... "Flat" searches the keys' own buffer (no copy, exact).
  std::string factory = "Flat";
  int nprobe = 0;     // IVF lists visited per query; 0 keeps faiss's default
  int ef_search = 0;  // HNSW search breadth; 0 keeps faiss's default
  // Trainable banks only: rebuild an approximate index every this many optimizer steps
  // (0 = never rebuild automatically). Exact ("Flat") search needs no rebuild.
  int64_t rebuild_interval = 100;
  // Keys used to train IVF/PQ quantizers (0 = min(N, 64 * nlist)); a random sample.
  int64_t train_size = 0;
  uint64_t seed = 1234;

  bool is_flat() const { return factory == "Flat"; }
};

}  // namespace kvtune

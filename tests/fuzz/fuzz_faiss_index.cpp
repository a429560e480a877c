// The faiss index reader with kvtune's validation (read_validated_index), then a search of what
// passed: any crash or sanitizer report means an index a search cannot trust got through.
#include <faiss/Index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.h"
#include "index/index_reader.h"

// faiss's reader sizes vectors from the file (up to 2^40 elements) before it reads them. Outside
// ASan an impossible size fails as std::bad_alloc, which KeyIndex::load reports ("out of memory
// (a size in the file may be corrupt)"); ASan would abort instead, so allocations over 1 GiB
// fail here the way they do in a normal build.
void* operator new(size_t n) {
  if (n > (size_t{1} << 30)) throw std::bad_alloc();
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As KeyIndex::load reads: in a child process, validated (index/index_reader.h). A crash or a
  // hang of faiss's reader there is a kvtune::Error here; libFuzzer does not see the child's
  // coverage, only the search below.
  static const std::string path = "/tmp/kvtune_fuzz_index_" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  std::unique_ptr<faiss::Index> index;
  try {
    index = kvtune::read_validated_index(path);
  } catch (const kvtune::Error&) {
    return 0;
  }
  if (index->d > 256 || index->ntotal > 100000 || !index->is_trained) return 0;
  const int64_t k = 4;
  std::vector<float> queries(static_cast<size_t>(2 * index->d), 0.5f), scores(2 * k);
  std::vector<faiss::Index::idx_t> ids(2 * k);
  try {
    index->search(2, queries.data(), k, scores.data(), ids.data());
  } catch (const faiss::FaissException&) {
    return 0;
  } catch (const std::bad_alloc&) {
    return 0;
  }
  for (const auto id : ids) {
    if (id < -1 || id >= index->ntotal) __builtin_trap();  // an id the bank does not have
  }
  return 0;
}

// The faiss index reader, then kvtune's validation, then a search of what passed: any crash or
// sanitizer report means validate_faiss_index let through an index a search cannot trust.
#include <faiss/Index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "common/check.h"
#include "index/index_check.h"

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
  faiss::VectorIOReader reader;
  reader.data.assign(data, data + size);
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::read_index(&reader));
  } catch (const faiss::FaissException&) {
    return 0;
  } catch (const std::bad_alloc&) {
    return 0;
  } catch (const std::length_error&) {
    return 0;  // KeyIndex::load reports it as a kvtune error
  }
  try {
    kvtune::validate_faiss_index(*index, "fuzz");
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

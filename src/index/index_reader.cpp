#include "index/index_reader.h"

#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/isolated_call.h"
#include "index/index_check.h"

namespace kvtune {
namespace {

std::unique_ptr<faiss::Index> read_or_throw(const std::string& path, faiss::IOReader* reader) {
  const std::string what = "reading index " + path;
  try {
    return std::unique_ptr<faiss::Index>(reader != nullptr ? faiss::read_index(reader)
                                                           : faiss::read_index(path.c_str()));
  } catch (const faiss::FaissException& e) {
    KVT_THROW(what, " (not a faiss index, or truncated: rebuild it): faiss: ", e.msg);
  } catch (const std::bad_alloc&) {
    KVT_THROW(what, ": out of memory (a size in the file may be corrupt)");
  } catch (const std::length_error&) {
    KVT_THROW(what, ": a size in the file is out of range (the file is corrupt)");
  }
}

// faiss's serializer writing into the memory file of isolated_call_bulk, through a buffer.
struct SinkWriter : faiss::IOWriter {
  explicit SinkWriter(BulkSink& sink) : sink(sink) { buffer.reserve(kBuffer); }
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    const size_t n = size * nitems;
    if (buffer.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      sink.write(ptr, n);
    } else {
      const char* c = static_cast<const char*>(ptr);
      buffer.insert(buffer.end(), c, c + n);
    }
    return nitems;
  }
  void flush() {
    if (!buffer.empty()) sink.write(buffer.data(), buffer.size());
    buffer.clear();
  }
  static constexpr size_t kBuffer = 1 << 20;
  BulkSink& sink;
  std::vector<char> buffer;
};

// faiss's deserializer reading mapped bytes in place.
struct BytesReader : faiss::IOReader {
  BytesReader(const char* data, size_t size) : data(data), size(size) {}
  size_t operator()(void* ptr, size_t item, size_t nitems) override {
    if (item == 0 || nitems == 0) return 0;
    const size_t n = std::min(nitems, (size - at) / item);
    std::memcpy(ptr, data + at, n * item);
    at += n * item;
    return n;
  }
  const char* data;
  size_t size;
  size_t at = 0;
};

}  // namespace

// The child reads and checks the index, and serializes it into the memory file; this process
// reads that copy in place (nothing goes through the pipe).
PendingIndexRead::PendingIndexRead(std::string path)
    : path_(std::move(path)),
      call_(
          [this](BulkSink& sink) {
            const auto index = read_or_throw(path_, nullptr);
            validate_faiss_index(*index, "index " + path_);
            SinkWriter out(sink);
            faiss::write_index(index.get(), &out);
            out.flush();
            return std::string();
          },
          "index " + path_, read_timeout_seconds(path_)) {}

std::unique_ptr<faiss::Index> PendingIndexRead::get() {
  const IsolatedResult result = call_.finish();
  BytesReader in(result.bulk->data(), result.bulk->size());
  return read_or_throw(path_, &in);
}

std::unique_ptr<faiss::Index> read_validated_index(const std::string& path) {
  return PendingIndexRead(path).get();
}

}  // namespace kvtune

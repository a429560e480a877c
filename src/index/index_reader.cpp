#include "index/index_reader.h"

#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <new>
#include <stdexcept>

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

}  // namespace

std::unique_ptr<faiss::Index> read_validated_index(const std::string& path) {
  const std::string bytes = isolated_call(
      [&] {
        const auto index = read_or_throw(path, nullptr);
        validate_faiss_index(*index, "index " + path);
        faiss::VectorIOWriter out;
        faiss::write_index(index.get(), &out);
        return std::string(out.data.begin(), out.data.end());
      },
      "index " + path, read_timeout_seconds(path));
  faiss::VectorIOReader in;
  in.data.assign(bytes.begin(), bytes.end());
  return read_or_throw(path, &in);
}

}  // namespace kvtune

#include "data/gzip_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/path_checks.h"

namespace kvtune {
namespace {

bool has_gzip_magic(const std::string& bytes, size_t at) {
  return bytes.size() >= at + 2 && static_cast<unsigned char>(bytes[at]) == 0x1f &&
         static_cast<unsigned char>(bytes[at + 1]) == 0x8b;
}

std::string first_bytes_hex(const std::string& bytes) {
  std::ostringstream os;
  const size_t n = std::min<size_t>(bytes.size(), 4);
  for (size_t i = 0; i < n; ++i) {
    static const char* kHex = "0123456789abcdef";
    const auto c = static_cast<unsigned char>(bytes[i]);
    os << (i ? " " : "") << kHex[c >> 4] << kHex[c & 15];
  }
  return n ? os.str() : "none, the file is empty";
}

// Owns a z_stream so that every exit path calls inflateEnd.
class Inflater {
 public:
  Inflater() {
    std::memset(&stream_, 0, sizeof(stream_));
    // 16 + MAX_WBITS: expect a gzip header and trailer, not a raw zlib stream.
    ok_ = inflateInit2(&stream_, 16 + MAX_WBITS) == Z_OK;
  }
  ~Inflater() {
    if (ok_) inflateEnd(&stream_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  bool ok() const { return ok_; }
  z_stream& stream() { return stream_; }

 private:
  z_stream stream_;
  bool ok_ = false;
};

}  // namespace

std::string gunzip(const std::string& compressed, const std::string& name) {
  KVT_CHECK(has_gzip_magic(compressed, 0), "file ", name,
            ": not a gzip/dictzip file (first bytes: ", first_bytes_hex(compressed),
            "; gzip starts with 1f 8b); dictd data must be NAME.dict.dz as written by dictzip");
  Inflater inflater;
  KVT_CHECK(inflater.ok(), "file ", name, ": zlib could not start a decompressor (out of memory?)");
  z_stream& zs = inflater.stream();

  std::string out;
  out.reserve(compressed.size() * 4);
  constexpr size_t kChunk = 1 << 20;
  size_t in_pos = 0;
  for (;;) {
    // avail_in is 32-bit: feed at most 1 GiB at a time.
    const size_t in_left = compressed.size() - in_pos;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data() + in_pos));
    zs.avail_in = static_cast<uInt>(std::min<size_t>(in_left, size_t{1} << 30));
    const uInt fed = zs.avail_in;

    const size_t old_size = out.size();
    out.resize(old_size + kChunk);
    zs.next_out = reinterpret_cast<Bytef*>(&out[old_size]);
    zs.avail_out = static_cast<uInt>(kChunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old_size + (kChunk - zs.avail_out));
    in_pos += fed - zs.avail_in;

    if (rc == Z_STREAM_END) {
      // dictzip writes one member; `cat a.gz b.gz` is still valid gzip, so keep going when
      // another member follows, and ignore trailing bytes that are not one (as gzip does).
      if (!has_gzip_magic(compressed, in_pos)) break;
      KVT_CHECK(inflateReset(&zs) == Z_OK, "file ", name, ": zlib could not reset");
      continue;
    }
    if (rc == Z_OK) continue;
    // Z_BUF_ERROR: no progress possible with output space free, so the input ran out.
    if (rc == Z_BUF_ERROR && in_pos >= compressed.size()) {
      KVT_THROW("file ", name, ": gzip data ends early (truncated after ", compressed.size(),
                " compressed bytes, ", out.size(), " decompressed); re-download or reinstall it");
    }
    KVT_THROW("file ", name, ": corrupt gzip data at compressed byte ", in_pos,
              " (zlib: ", zs.msg ? zs.msg : zError(rc), "); re-download or reinstall it");
  }
  return out;
}

std::string read_gzip_file(const std::string& path) {
  KVT_CHECK(path_exists(path), "file ", path,
            " does not exist; check the path (dictd data lives in /usr/share/dictd, installed by "
            "the dict-NAME packages)");
  std::ifstream in(path, std::ios::binary);
  KVT_CHECK(in, "file ", path, " cannot be opened: ", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  KVT_CHECK(!in.bad(), "file ", path, ": read error: ", std::strerror(errno));
  return gunzip(bytes, path);
}

}  // namespace kvtune

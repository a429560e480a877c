#include "common/crc32.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

namespace kvtune {

Crc32::Crc32() : crc_(::crc32(0L, Z_NULL, 0)) {}

void Crc32::update(const void* data, size_t size) {
  const auto* p = static_cast<const Bytef*>(data);
  // zlib takes a uInt length: feed pieces of at most 1 GiB.
  while (size > 0) {
    const size_t piece = std::min<size_t>(size, size_t{1} << 30);
    crc_ = ::crc32(static_cast<uLong>(crc_), p, static_cast<uInt>(piece));
    p += piece;
    size -= piece;
  }
}

std::string Crc32::hex() const {
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08lx", static_cast<unsigned long>(crc_));
  return hex;
}

std::string crc32_hex(std::string_view bytes) {
  Crc32 crc;
  crc.update(bytes.data(), bytes.size());
  return crc.hex();
}

}  // namespace kvtune

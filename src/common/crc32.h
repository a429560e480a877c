// CRC-32 (zlib's, the checksum gzip and PNG use) as 8 lower-case hex digits: the checksums that
// model folders record for their files (model/model_io.h, model/sentencepiece_tokenizer.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvtune {

// Incremental: update() with the pieces in order, then hex().
class Crc32 {
 public:
  Crc32();
  void update(const void* data, size_t size);
  std::string hex() const;  // "cbf43926" for the bytes "123456789"

 private:
  uint64_t crc_;
};

// The CRC-32 of `bytes`, as Crc32::hex().
std::string crc32_hex(std::string_view bytes);

}  // namespace kvtune

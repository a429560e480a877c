// Plain text, JSONL and dictd (index + .dict or .dict.dz) readers on one input. The first byte
// picks the reader; for dictd the next two bytes give the length of the index part and the rest
// is the dictionary data (gzip when it starts with the gzip magic).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>

#include "common/check.h"
#include "data/dictd_reader.h"
#include "data/text_reader.h"

namespace {

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = "/tmp/kvtune_fuzz_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string all(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
        kvtune::read_plain_text(write_temp("t.txt", all));
        break;
      case 1:
        kvtune::read_jsonl(write_temp("t.jsonl", all), "text", data[0] % 2 ? "title" : "");
        break;
      default: {
        if (all.size() < 2) return 0;
        const size_t n = (static_cast<uint8_t>(all[0]) | static_cast<uint8_t>(all[1]) << 8);
        const std::string rest = all.substr(2);
        const std::string index = rest.substr(0, std::min(n, rest.size()));
        const std::string dict = rest.substr(index.size());
        const bool gz = dict.size() >= 2 && static_cast<uint8_t>(dict[0]) == 0x1f &&
                        static_cast<uint8_t>(dict[1]) == 0x8b;
        kvtune::read_dictd(
            write_temp("d.index", index), write_temp(gz ? "d.dict.dz" : "d.dict", dict),
            data[0] % 2 ? kvtune::DictdText::kNormalized : kvtune::DictdText::kKeepLines);
        break;
      }
    }
  } catch (const kvtune::Error&) {
  }
  return 0;
}

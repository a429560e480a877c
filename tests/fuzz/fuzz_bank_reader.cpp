// The bank reader (HDF5 file -> validated Bank) on arbitrary bytes. HDF5 itself is not
// instrumented: what this checks is that kvtune's checks and copies never read out of bounds and
// every problem is a kvtune::Error.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "bank/bank_io.h"
#include "common/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/kvtune_fuzz_bank_" + std::to_string(::getpid()) + ".h5";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    const kvtune::Bank bank = kvtune::read_bank(path);
    (void)bank.size();
  } catch (const kvtune::Error&) {
  }
  return 0;
}

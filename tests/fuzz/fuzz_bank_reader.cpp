// The bank reader (HDF5 file -> validated Bank) on arbitrary bytes, as users get it: HDF5 reads
// the file in a child process (common/isolated_call.h), so this checks that no input crashes the
// calling process and every problem is a kvtune::Error. HDF5 1.10 does have memory errors on
// some damaged files (regressions/bank_reader-hdf5-use-after-free, found here before the
// isolation). libFuzzer does not see the child's coverage, so this harness mutates blindly
// inside HDF5's parser; the parent's image reader is covered.
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

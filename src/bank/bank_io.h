// Reading and writing banks as HDF5 files (layout: docs/bank-format.md).
#pragma once

#include <string>

#include "bank/bank.h"

namespace kvtune {

// Reads and validates a bank. Every problem (not HDF5, missing dataset, wrong shape or dtype,
// N mismatch, non-finite or non-unit keys, unknown format version) is a kvtune::Error that names
// the file and the problem.
Bank read_bank(const std::string& path);

// Validates, then writes to a temporary name and renames it into place when complete: a failed
// write leaves an existing file at `path` untouched.
void write_bank(const std::string& path, const Bank& bank);

}  // namespace kvtune

// Reading and writing banks as HDF5 files (layout: docs/bank-format.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "bank/bank.h"

namespace kvtune {

// Reads and validates a bank. Every problem (not HDF5, missing dataset, wrong shape or dtype,
// N mismatch, non-finite or non-unit keys, unknown format version) is a kvtune::Error that names
// the file and the problem.
Bank read_bank(const std::string& path);

// One rank's share of the rows of the bank file `path` (memory parallelism,
// docs/distributed.md): rows [begin, begin + count) of row_share(N, rank, world_size), read
// without reading the other rows (HDF5 hyperslabs of keys, values, slot_ids and usage) and
// validated as read_bank validates a whole bank. The slot origin table is not read: a shard is
// for searching and training, not for `bank inspect`. Refused when the bank has fewer rows than
// there are ranks.
struct BankShare {
  Bank bank;               // the share's rows; meta as in the file
  int64_t begin = 0;       // the file's row of the share's row 0
  int64_t total_rows = 0;  // N, the rows of the whole bank
};
BankShare read_bank_share(const std::string& path, int rank, int world_size);

// Validates, then writes to a temporary name and renames it into place when complete: a failed
// write leaves an existing file at `path` untouched.
// meta.index_id is not written: the bank is bound to no index file.
void write_bank(const std::string& path, const Bank& bank);

// As write_bank, and records `index_id` (the id in the index file written beside it). Used by
// IndexedBank::save.
void write_bank(const std::string& path, const Bank& bank, const std::string& index_id);

// The index_id attribute of the bank file at `path` without reading the bank: "" when the file
// has none, and nullopt when it does not exist or is not a readable HDF5 file.
std::optional<std::string> read_bank_index_id(const std::string& path);

// True when `path` is an HDF5 file with a format_version attribute (a kvtune bank, valid or not).
bool is_bank_file(const std::string& path);

}  // namespace kvtune

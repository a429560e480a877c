// Reading a faiss index file so that nothing in it can crash kvtune: faiss's reader trusts the
// file, and some damaged files make the reader itself fail hard (a division by zero in
// ProductQuantizer::set_derived_values for an IVF-PQ index that declares M = 0, found by
// tests/fuzz/fuzz_faiss_index). The file is read and validated (index_check.h) in a child
// process (common/isolated_call.h), which sends the index back as faiss writes it; this process
// reads only those bytes.
#pragma once

#include <memory>
#include <string>

#include <faiss/Index.h>

#include "common/isolated_call.h"

namespace kvtune {

// The index in `path`, validated. Every problem (a damaged file, an inconsistent structure, a
// crash or a hang of faiss's reader) is a kvtune::Error naming `path`.
std::unique_ptr<faiss::Index> read_validated_index(const std::string& path);

// read_validated_index in two steps: the constructor starts the child that reads `path`, get()
// waits for it and returns the index (once), or throws what read_validated_index throws. This
// process may read another file meanwhile (bank/indexed_bank.h reads a bank and its index
// together). Dropped unfinished, the read is abandoned (its child killed).
class PendingIndexRead {
 public:
  explicit PendingIndexRead(std::string path);
  const std::string& path() const { return path_; }
  std::unique_ptr<faiss::Index> get();

 private:
  std::string path_;
  PendingBulkCall call_;
};

}  // namespace kvtune

// Whole-file gzip decompression (dictzip .dict.dz files are gzip-compatible).
#pragma once

#include <string>

namespace kvtune {

// Reads and decompresses the gzip file at `path`; concatenated gzip members are joined.
// Throws kvtune::Error naming `path` when the file is missing, is not gzip, or is corrupt or
// truncated. Unlike gzread, a file that is not gzip is an error, not passed through as is.
std::string read_gzip_file(const std::string& path);

// Decompresses gzip bytes already in memory; `name` is only used in error messages.
std::string gunzip(const std::string& compressed, const std::string& name);

}  // namespace kvtune

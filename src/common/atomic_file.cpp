#include "common/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/check.h"

namespace kvtune {

std::string atomic_temp_path(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

AtomicOutput::AtomicOutput(std::string path)
    : path_(std::move(path)), temp_(atomic_temp_path(path_)) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path_).parent_path();
  KVT_CHECK(parent.empty() || fs::is_directory(parent), "cannot write ", path_, ": folder ",
            parent.string(), " does not exist (create it first)");
  KVT_CHECK(!fs::is_directory(path_), "cannot write ", path_,
            ": it is a folder (give a file name)");
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);  // best effort: never throw from a destructor
  }
}

void AtomicOutput::commit() {
  KVT_CHECK(std::rename(temp_.c_str(), path_.c_str()) == 0, "cannot move ", temp_, " to ", path_,
            ": ", std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary | std::ios::trunc);
    KVT_CHECK(f.good(), "cannot open ", out.temp_path(), " for writing: ", std::strerror(errno));
    f.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    f.flush();
    KVT_CHECK(f.good(), "write to ", out.temp_path(), " failed: ", std::strerror(errno));
  }
  out.commit();
}

}  // namespace kvtune

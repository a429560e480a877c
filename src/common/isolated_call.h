// Running a step that hands untrusted bytes to a library in a child process. HDF5 1.10 has
// memory errors on some damaged files (a use-after-free in its object-header code, found by
// tests/fuzz/fuzz_bank_reader): what it does there must not crash or corrupt the process that
// asked. isolated_call forks, runs `work` in the child and returns what `work` returned, sent
// back through a pipe.
#pragma once

#include <functional>
#include <string>

namespace kvtune {

// Runs `work` in a forked child and returns its result. A kvtune::Error thrown in the child is
// thrown again here with the same message. A child that dies (a signal, a sanitizer report, any
// exit without a result) becomes a kvtune::Error "<what> could not be read: the library reading
// it crashed (...): the file is damaged; restore a copy or write it again". A child still busy
// after `timeout_s` seconds is killed (HDF5 loops forever on some damaged files), which is an
// error too. `work` must not need threads (OpenMP is set to one thread in the child).
std::string isolated_call(const std::function<std::string()>& work, const std::string& what,
                          double timeout_s);

// The time a read of the file `path` may take in isolated_call: 60 s plus its size at 20 MB/s,
// or the environment variable KVTUNE_READ_TIMEOUT (seconds) when set.
double read_timeout_seconds(const std::string& path);

}  // namespace kvtune

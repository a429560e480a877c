// A progress line on stderr: step, loss, tokens/s, ETA. Redrawn in place on a terminal,
// printed every `every` steps otherwise (CI logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kvtune {

class Progress {
 public:
  // print false: counts only (the ranks other than 0 of a multi-process run).
  Progress(std::string label, int64_t first_step, int64_t total_steps, int64_t every,
           bool print = true);
  void update(int64_t step, double loss, int64_t tokens_this_step);
  void finish();
  double tokens_per_second() const;
  double elapsed_seconds() const;

 private:
  std::string label_;
  int64_t first_, total_, every_;
  bool tty_;
  bool print_;
  int64_t tokens_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kvtune

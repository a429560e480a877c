#include "train/progress.h"

#include <unistd.h>

#include <cstdio>

namespace kvtune {

Progress::Progress(std::string label, int64_t first_step, int64_t total_steps, int64_t every,
                   bool print)
    : label_(std::move(label)),
      first_(first_step),
      total_(total_steps),
      every_(every > 0 ? every : 10),
      tty_(isatty(STDERR_FILENO) != 0),
      print_(print),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::tokens_per_second() const {
  const double t = elapsed_seconds();
  return t > 0 ? double(tokens_) / t : 0.0;
}

void Progress::update(int64_t step, double loss, int64_t tokens_this_step) {
  tokens_ += tokens_this_step;
  const int64_t done = step + 1;
  if (!print_) return;
  if (!tty_ && done % every_ != 0 && done != total_) return;
  const double t = elapsed_seconds();
  const double per_step = done > first_ ? t / double(done - first_) : 0.0;
  const int eta = static_cast<int>(per_step * double(total_ - done));
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : 0;
  std::string bar(filled, '=');
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "%s%s %5lld/%lld [%s] loss %.4f  %.0f tok/s  ETA %d:%02d%s",
               tty_ ? "\r" : "", label_.c_str(), static_cast<long long>(done),
               static_cast<long long>(total_), bar.c_str(), loss, tokens_per_second(), eta / 60,
               eta % 60, tty_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (print_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace kvtune

// Progress line implementation.
#include "seqrec/common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace seqrec {

std::string format_duration(double seconds) {
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else {
    const int64_t s = static_cast<int64_t>(seconds);
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", long(s / 3600), long(s / 60 % 60), long(s % 60));
    else
      std::snprintf(buf, sizeof buf, "%02ldm%02lds", long(s / 60), long(s % 60));
  }
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total_steps, int64_t every)
    : label_(std::move(label)), total_(total_steps), every_(every), tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t step, double loss, double lr, int64_t items) {
  items_ += items;
  last_lr_ = lr;
  if (tty_ || step % every_ == 0) print(step, loss, lr, false);
}

void ProgressBar::print(int64_t step, double loss, double lr, bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? items_ / elapsed : 0;
  const double eta = step > 0 ? elapsed / step * (total_ - step) : 0;
  const int width = 20;
  const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
  std::string bar(filled, '#');
  bar += std::string(width - filled, '.');
  std::fprintf(stderr, "%s[train] %s [%s] step %ld/%ld loss %.4f lr %.2e %.0f seq/s %s %s%s",
               tty_ ? "\r" : "", label_.c_str(), bar.c_str(), long(step), long(total_), loss, lr, rate,
               final ? "took" : "eta", format_duration(final ? elapsed : eta).c_str(),
               tty_ && !final ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

double ProgressBar::finish(double mean_loss) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  print(total_, mean_loss, last_lr_, true);
  return elapsed > 0 ? items_ / elapsed : 0;
}

}  // namespace seqrec

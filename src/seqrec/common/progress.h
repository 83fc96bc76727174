// A training progress line: step, loss, lr, sequences/s and ETA, redrawn in place on a terminal and
// printed as plain lines every `every` steps otherwise (logs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace seqrec {

/// Progress of one epoch.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps, int64_t every);
  /// Records one finished step of `items` sequences; prints when due.
  void update(int64_t step, double loss, double lr, int64_t items);
  /// Final line of the epoch; returns items/s over the epoch.
  double finish(double mean_loss);

 private:
  void print(int64_t step, double loss, double lr, bool final);
  std::string label_;
  int64_t total_, every_, items_ = 0;
  double last_lr_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

/// "1h02m03s" / "02m03s" / "3.2s".
std::string format_duration(double seconds);

}  // namespace seqrec

// Micro-batching: queries of concurrent requests wait in one queue; a pool of workers takes up to
// max_batch of them (waiting at most max_wait_us after the first for more to arrive) and ranks them
// with one call, i.e. one model forward. Callers wait with a deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "seqrec/serve/query.h"

namespace seqrec::serve {

/// How queries are batched.
struct BatcherOptions {
  int64_t max_batch = 32;       ///< queries per call of the ranking function
  int64_t max_wait_us = 1000;   ///< wait for more queries after the first of a batch
  int64_t workers = 1;          ///< batches that run concurrently
  int64_t queue_limit = 4096;   ///< queued queries before run() refuses (ApiError 503)
};

/// A queue of queries in front of a batch ranking function. Thread-safe.
class MicroBatcher {
 public:
  /// Ranks a batch (one forward); must return one Ranked per query, in order.
  using RankFn = std::function<std::vector<Ranked>(const std::vector<const Query*>&)>;
  /// Told the size of every batch run (metrics).
  using BatchObserver = std::function<void(int64_t size)>;

  MicroBatcher(RankFn rank, BatcherOptions options, BatchObserver observer = {});
  /// stop()s.
  ~MicroBatcher();
  MicroBatcher(const MicroBatcher&) = delete;
  MicroBatcher& operator=(const MicroBatcher&) = delete;

  /// Ranks `queries` (batched with other callers' queries), waiting until `deadline`. Throws
  /// ApiError 503 (queue full or stopped), 504 (deadline passed: the queries are dropped if they
  /// have not started), or rethrows the ranking function's error.
  std::vector<Ranked> run(std::vector<Query> queries, std::chrono::steady_clock::time_point deadline);
  /// Refuses new queries, finishes the queued ones and joins the workers.
  void stop();
  /// Queries waiting now.
  int64_t queued() const;

 private:
  struct Call;
  struct Entry {
    std::shared_ptr<Call> call;
    size_t index;
  };
  void work();
  void take_batch(std::unique_lock<std::mutex>& lock, std::vector<Entry>* batch);

  RankFn rank_;
  BatcherOptions options_;
  BatchObserver observer_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Entry> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace seqrec::serve

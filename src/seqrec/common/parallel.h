// A torch-free parallel loop for the data side (prepare, readers): tasks handed out in order to a
// few std::threads; the first failure by task index is rethrown, so errors are the same whatever
// the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace seqrec {

/// Threads to use for `requested` (0 = all cores), at least 1.
inline int resolve_threads(int64_t requested) {
  if (requested > 0) return static_cast<int>(requested);
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

/// Runs fn(task) for task in [0, tasks) on up to `threads` threads (the caller's among them).
/// Every task runs unless an earlier-indexed one failed; the exception of the lowest failing task
/// is rethrown after all threads have joined.
template <typename Fn>
void parallel_tasks(int64_t tasks, int threads, Fn&& fn) {
  if (tasks <= 0) return;
  const int n = static_cast<int>(std::min<int64_t>(std::max(threads, 1), tasks));
  if (n == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> failed_at{tasks};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(tasks));
  auto worker = [&] {
    while (true) {
      const int64_t t = next.fetch_add(1);
      if (t >= tasks || t > failed_at.load()) return;
      try {
        fn(t);
      } catch (...) {
        errors[static_cast<size_t>(t)] = std::current_exception();
        int64_t cur = failed_at.load();
        while (t < cur && !failed_at.compare_exchange_weak(cur, t)) {
        }
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(n - 1));
  for (int i = 1; i < n; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  const int64_t f = failed_at.load();
  if (f < tasks) std::rethrow_exception(errors[static_cast<size_t>(f)]);
}

/// Splits [0, n) into `parts` contiguous ranges; range p is [bound(p), bound(p + 1)).
inline int64_t split_bound(int64_t n, int64_t parts, int64_t p) { return n * p / parts; }

}  // namespace seqrec

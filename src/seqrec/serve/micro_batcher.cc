// The micro-batching queue and its workers.
#include "seqrec/serve/micro_batcher.h"

#include <atomic>

#include "seqrec/serve/request.h"

namespace seqrec::serve {

// One run() call: its queries and their results, shared by the caller and the workers (the caller
// may leave at its deadline while a worker still holds the call).
struct MicroBatcher::Call {
  std::vector<Query> queries;
  std::vector<Ranked> results;
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  std::condition_variable done_cv;
  size_t remaining = 0;
  std::exception_ptr error;

  void finish(size_t index, Ranked* result, std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (result) results[index] = std::move(*result);
    if (e && !error) error = e;
    if (--remaining == 0) done_cv.notify_all();
  }
};

MicroBatcher::MicroBatcher(RankFn rank, BatcherOptions options, BatchObserver observer)
    : rank_(std::move(rank)), options_(options), observer_(std::move(observer)) {
  for (int64_t i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { work(); });
}

MicroBatcher::~MicroBatcher() { stop(); }

void MicroBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_)
    if (t.joinable()) t.join();
}

int64_t MicroBatcher::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

std::vector<Ranked> MicroBatcher::run(std::vector<Query> queries, std::chrono::steady_clock::time_point deadline) {
  auto call = std::make_shared<Call>();
  const size_t n = queries.size();
  if (n == 0) return {};
  call->queries = std::move(queries);
  call->results.resize(n);
  call->remaining = n;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw ApiError(503, "unavailable", "the server is shutting down");
    if (static_cast<int64_t>(queue_.size() + n) > options_.queue_limit)
      throw ApiError(503, "overloaded", "the server is overloaded: " + std::to_string(queue_.size()) + " queries queued (limit " +
                                            std::to_string(options_.queue_limit) + "); retry later");
    for (size_t i = 0; i < n; ++i) queue_.push_back({call, i});
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lock(call->mutex);
  if (!call->done_cv.wait_until(lock, deadline, [&] { return call->remaining == 0; })) {
    call->cancelled = true;  // queued queries of this call are skipped; running ones finish unread
    throw ApiError(504, "timeout", "the request took longer than the server's timeout");
  }
  if (call->error) std::rethrow_exception(call->error);
  return std::move(call->results);
}

void MicroBatcher::take_batch(std::unique_lock<std::mutex>& lock, std::vector<Entry>* batch) {
  std::chrono::steady_clock::time_point fill_deadline;  // set when the batch gets its first query
  while (static_cast<int64_t>(batch->size()) < options_.max_batch) {
    if (!queue_.empty()) {
      Entry e = std::move(queue_.front());
      queue_.pop_front();
      if (e.call->cancelled) {  // its caller has given up
        e.call->finish(e.index, nullptr, nullptr);
        continue;
      }
      if (batch->empty()) fill_deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(options_.max_wait_us);
      batch->push_back(std::move(e));
      continue;
    }
    if (batch->empty()) {
      if (stopping_) return;
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      continue;
    }
    if (stopping_ || options_.max_wait_us == 0) return;
    if (!cv_.wait_until(lock, fill_deadline, [&] { return !queue_.empty() || stopping_; })) return;
  }
}

void MicroBatcher::work() {
  for (;;) {
    std::vector<Entry> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      take_batch(lock, &batch);
      if (batch.empty() && stopping_ && queue_.empty()) return;
    }
    if (batch.empty()) continue;
    std::vector<const Query*> queries;
    for (const Entry& e : batch) queries.push_back(&e.call->queries[e.index]);
    std::vector<Ranked> results;
    std::exception_ptr error;
    try {
      results = rank_(queries);
      if (results.size() != batch.size()) throw std::logic_error("the ranking function returned the wrong number of results");
    } catch (...) {
      error = std::current_exception();
    }
    if (observer_) observer_(static_cast<int64_t>(batch.size()));
    for (size_t i = 0; i < batch.size(); ++i) batch[i].call->finish(batch[i].index, error ? nullptr : &results[i], error);
  }
}

}  // namespace seqrec::serve

// Server metrics in the Prometheus text format: requests by route and status, a latency histogram,
// a batch-size histogram, the model's version and checkpoint. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace seqrec::serve {

/// A cumulative histogram with fixed upper bounds (Prometheus `le`), lock-free to observe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  /// Lines `<name>_bucket{le=".."} n`, `<name>_sum`, `<name>_count`.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<int64_t>> counts_;  // one per bound, plus +Inf (not cumulative)
  std::atomic<int64_t> count_{0};
  std::atomic<double> sum_{0};
};

/// Every metric of the server.
class ServeMetrics {
 public:
  ServeMetrics();
  /// One answered request: route pattern ("/v1/recommend"), HTTP status, seconds from read to reply.
  void observe_request(const std::string& route, int status, double seconds);
  /// One forward of `size` queries.
  void observe_batch(int64_t size);
  /// The model now serving.
  void set_model(int64_t version, const std::string& checkpoint);
  /// A reload that failed (the old model kept serving).
  void count_failed_reload();
  /// The Prometheus text exposition.
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (route, status) -> count
  Histogram latency_;
  Histogram batch_size_;
  int64_t model_version_ = 0;
  std::string checkpoint_;
  int64_t failed_reloads_ = 0;
};

}  // namespace seqrec::serve

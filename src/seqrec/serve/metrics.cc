// Prometheus text rendering of the server's counters and histograms.
#include "seqrec/serve/metrics.h"

#include <cstdio>

namespace seqrec::serve {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// Label values escape backslash, quote and newline (exposition format).
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {
  for (auto& c : counts_) c = 0;
}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + value, std::memory_order_relaxed)) {
  }
}

std::string Histogram::render(const std::string& name) const {
  std::string out;
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_.back().load(std::memory_order_relaxed);
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += name + "_sum " + number(sum_.load(std::memory_order_relaxed)) + "\n";
  out += name + "_count " + std::to_string(count_.load(std::memory_order_relaxed)) + "\n";
  return out;
}

ServeMetrics::ServeMetrics()
    : latency_({0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256}) {}

void ServeMetrics::observe_request(const std::string& route, int status, double seconds) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[{route, status}];
  }
  latency_.observe(seconds);
}

void ServeMetrics::observe_batch(int64_t size) { batch_size_.observe(static_cast<double>(size)); }

void ServeMetrics::set_model(int64_t version, const std::string& checkpoint) {
  std::lock_guard<std::mutex> lock(mutex_);
  model_version_ = version;
  checkpoint_ = checkpoint;
}

void ServeMetrics::count_failed_reload() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++failed_reloads_;
}

std::string ServeMetrics::render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mutex_);
  out += "# HELP seqrec_requests_total HTTP requests answered, by route and status.\n";
  out += "# TYPE seqrec_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out += "seqrec_requests_total{route=\"" + label(key.first) + "\",status=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(count) + "\n";
  out += "# HELP seqrec_request_duration_seconds Time from a request's arrival to its reply.\n";
  out += "# TYPE seqrec_request_duration_seconds histogram\n";
  out += latency_.render("seqrec_request_duration_seconds");
  out += "# HELP seqrec_batch_size Queries per model forward (micro-batching).\n";
  out += "# TYPE seqrec_batch_size histogram\n";
  out += batch_size_.render("seqrec_batch_size");
  out += "# HELP seqrec_model_version Version of the model serving (1 at start, +1 per reload).\n";
  out += "# TYPE seqrec_model_version gauge\n";
  out += "seqrec_model_version " + std::to_string(model_version_) + "\n";
  out += "# HELP seqrec_model_info The checkpoint serving.\n";
  out += "# TYPE seqrec_model_info gauge\n";
  out += "seqrec_model_info{checkpoint=\"" + label(checkpoint_) + "\",version=\"" + std::to_string(model_version_) + "\"} 1\n";
  out += "# HELP seqrec_reload_failures_total Reloads that failed (the previous model kept serving).\n";
  out += "# TYPE seqrec_reload_failures_total counter\n";
  out += "seqrec_reload_failures_total " + std::to_string(failed_reloads_) + "\n";
  return out;
}

}  // namespace seqrec::serve

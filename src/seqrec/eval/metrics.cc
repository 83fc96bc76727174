// Ranking metrics from 0-based target ranks.
#include "seqrec/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "seqrec/eval/report.h"

namespace seqrec::eval {

MetricAccumulator::MetricAccumulator(std::vector<int64_t> ks)
    : ks_(std::move(ks)), hr_sum_(ks_.size(), 0.0), ndcg_sum_(ks_.size(), 0.0) {
  for (int64_t k : ks_)
    if (k < 1) throw std::invalid_argument("MetricAccumulator: cut-off k=" + std::to_string(k) +
                                           " must be >= 1");
}

void MetricAccumulator::add(int64_t rank) {
  if (rank < 0) throw std::invalid_argument("MetricAccumulator::add: negative rank " +
                                            std::to_string(rank));
  // In double: callers may signal a miss with a huge rank (e.g. INT64_MAX); rank + 1 would overflow.
  const double r = static_cast<double>(rank);
  for (size_t i = 0; i < ks_.size(); ++i) {
    if (rank < ks_[i]) {
      hr_sum_[i] += 1.0;
      ndcg_sum_[i] += 1.0 / std::log2(r + 2.0);
    }
  }
  mrr_sum_ += 1.0 / (r + 1.0);
  ++count_;
}

void MetricAccumulator::merge(const MetricAccumulator& other) {
  if (other.ks_ != ks_) throw std::invalid_argument("MetricAccumulator::merge: different cut-offs");
  for (size_t i = 0; i < ks_.size(); ++i) {
    hr_sum_[i] += other.hr_sum_[i];
    ndcg_sum_[i] += other.ndcg_sum_[i];
  }
  mrr_sum_ += other.mrr_sum_;
  count_ += other.count_;
}

MetricSet MetricAccumulator::result() const {
  MetricSet out;
  const double n = count_ > 0 ? static_cast<double>(count_) : 1.0;
  for (size_t i = 0; i < ks_.size(); ++i) {
    const std::string k = std::to_string(ks_[i]);
    out["hr@" + k] = hr_sum_[i] / n;
    out["ndcg@" + k] = ndcg_sum_[i] / n;
  }
  out["mrr"] = mrr_sum_ / n;
  return out;
}

std::vector<double> MetricAccumulator::sums() const {
  std::vector<double> out;
  out.reserve(2 * ks_.size() + 2);
  out.insert(out.end(), hr_sum_.begin(), hr_sum_.end());
  out.insert(out.end(), ndcg_sum_.begin(), ndcg_sum_.end());
  out.push_back(mrr_sum_);
  out.push_back(static_cast<double>(count_));
  return out;
}

void MetricAccumulator::set_sums(const std::vector<double>& sums) {
  const size_t n = ks_.size();
  if (sums.size() != 2 * n + 2)
    throw std::invalid_argument("MetricAccumulator::set_sums: expected " +
                                std::to_string(2 * n + 2) + " values, got " +
                                std::to_string(sums.size()));
  for (size_t i = 0; i < n; ++i) {
    hr_sum_[i] = sums[i];
    ndcg_sum_[i] = sums[n + i];
  }
  mrr_sum_ = sums[2 * n];
  count_ = static_cast<int64_t>(std::llround(sums[2 * n + 1]));
}

int64_t rank_of(const std::vector<float>& scores, int64_t target) {
  if (target < 0 || target >= static_cast<int64_t>(scores.size()))
    throw std::out_of_range("rank_of: target " + std::to_string(target) + " outside " +
                            std::to_string(scores.size()) + " scores");
  const float t = scores[static_cast<size_t>(target)];
  const int64_t others = static_cast<int64_t>(scores.size()) - 1;
  // Pessimistic for NaN too: a NaN target ranks last, and a NaN competitor counts as beating it,
  // so a diverged model can never look good.
  if (std::isnan(t)) return others;
  int64_t rank = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (static_cast<int64_t>(i) == target) continue;
    if (scores[i] >= t || std::isnan(scores[i])) ++rank;
  }
  return rank;
}

namespace {

/// A metric as a JSON number with 6 significant digits ("%.6g"; always with a '.' or an exponent,
/// so it reads back as a float); NaN and infinities as null, as nlohmann::json writes them.
std::string metric_number(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  std::string out = buf;
  if (out.find_first_of(".e") == std::string::npos) out += ".0";
  return out;
}

}  // namespace

std::string to_json_line(const MetricSet& metrics, const std::string& split,
                         const std::string& protocol, int64_t users) {
  // Numbers printed here: nlohmann prints 17 significant digits (0.046031999999999997).
  std::vector<std::string> names;
  for (const auto& kv : metrics) names.push_back(kv.first);
  std::sort(names.begin(), names.end(), metric_name_less);
  std::string line = "{\"split\":" + nlohmann::json(split).dump() + ",\"protocol\":" +
                     nlohmann::json(protocol).dump() + ",\"users\":" + std::to_string(users);
  for (const auto& name : names) line += "," + nlohmann::json(name).dump() + ":" + metric_number(metrics.at(name));
  return line + "}";
}

}  // namespace seqrec::eval

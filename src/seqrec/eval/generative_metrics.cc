// Generative-protocol metrics from ranked beams.
#include "seqrec/eval/generative_metrics.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace seqrec::eval {

int64_t generative_rank(const std::vector<int64_t>& ranked_items, int64_t target) {
  for (size_t r = 0; r < ranked_items.size(); ++r)
    if (ranked_items[r] >= 0 && ranked_items[r] == target) return static_cast<int64_t>(r);
  return -1;
}

GenerativeMetrics::GenerativeMetrics(std::vector<int64_t> ks) : ranks_(std::move(ks)) {}

void GenerativeMetrics::add(const std::vector<int64_t>& ranked_items, int64_t target) {
  // evaluate.py sums every hit in the top K; beams are distinct codes, so there is at most one.
  const int64_t rank = generative_rank(ranked_items, target);
  ranks_.add(rank >= 0 ? rank : std::numeric_limits<int64_t>::max());  // a miss: no cut-off, rr ~ 0
  for (int64_t item : ranked_items)
    if (item < 0) ++non_items_;
  beams_ += static_cast<int64_t>(ranked_items.size());
}

void GenerativeMetrics::merge(const GenerativeMetrics& other) {
  ranks_.merge(other.ranks_);
  non_items_ += other.non_items_;
  beams_ += other.beams_;
}

MetricSet GenerativeMetrics::result() const {
  MetricSet out = ranks_.result();
  out["non_item_share"] = beams_ > 0 ? static_cast<double>(non_items_) / static_cast<double>(beams_) : 0.0;
  return out;
}

std::vector<double> GenerativeMetrics::sums() const {
  std::vector<double> out = ranks_.sums();
  out.push_back(static_cast<double>(non_items_));
  out.push_back(static_cast<double>(beams_));
  return out;
}

void GenerativeMetrics::set_sums(const std::vector<double>& sums) {
  const size_t n = ranks_.sums().size();
  if (sums.size() != n + 2)
    throw std::invalid_argument("GenerativeMetrics::set_sums: expected " + std::to_string(n + 2) + " values, got " +
                                std::to_string(sums.size()));
  ranks_.set_sums(std::vector<double>(sums.begin(), sums.begin() + static_cast<std::ptrdiff_t>(n)));
  non_items_ = std::llround(sums[n]);
  beams_ = std::llround(sums[n + 1]);
}

}  // namespace seqrec::eval

// Generative-protocol metrics from ranked beams.
#include "seqrec/eval/generative_metrics.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace seqrec::eval {

int64_t generative_rank(const std::vector<int64_t>& ranked_items, int64_t target) {
  for (size_t r = 0; r < ranked_items.size(); ++r)
    if (ranked_items[r] >= 0 && ranked_items[r] == target) return static_cast<int64_t>(r);
  return -1;
}

GenerativeMetrics::GenerativeMetrics(std::vector<int64_t> hit_ks, std::vector<int64_t> ndcg_ks)
    : hit_ks_(std::move(hit_ks)), ndcg_ks_(std::move(ndcg_ks)),
      hit_sum_(hit_ks_.size(), 0.0), ndcg_sum_(ndcg_ks_.size(), 0.0) {
  for (const auto* ks : {&hit_ks_, &ndcg_ks_})
    for (int64_t k : *ks)
      if (k < 1) throw std::invalid_argument("GenerativeMetrics: cut-off k=" + std::to_string(k) + " must be >= 1");
}

void GenerativeMetrics::add(const std::vector<int64_t>& ranked_items, int64_t target) {
  // evaluate.py scores every hit in the top K; beams are distinct codes, so there is at most one.
  const int64_t rank = generative_rank(ranked_items, target);
  if (rank >= 0) {
    for (size_t i = 0; i < hit_ks_.size(); ++i)
      if (rank < hit_ks_[i]) hit_sum_[i] += 1.0;
    for (size_t i = 0; i < ndcg_ks_.size(); ++i)
      if (rank < ndcg_ks_[i]) ndcg_sum_[i] += 1.0 / std::log2(static_cast<double>(rank) + 2.0);
  }
  for (int64_t item : ranked_items)
    if (item < 0) ++non_items_;
  beams_ += static_cast<int64_t>(ranked_items.size());
  ++count_;
}

void GenerativeMetrics::merge(const GenerativeMetrics& other) {
  if (other.hit_ks_ != hit_ks_ || other.ndcg_ks_ != ndcg_ks_)
    throw std::invalid_argument("GenerativeMetrics::merge: different cut-offs");
  for (size_t i = 0; i < hit_sum_.size(); ++i) hit_sum_[i] += other.hit_sum_[i];
  for (size_t i = 0; i < ndcg_sum_.size(); ++i) ndcg_sum_[i] += other.ndcg_sum_[i];
  non_items_ += other.non_items_;
  beams_ += other.beams_;
  count_ += other.count_;
}

MetricSet GenerativeMetrics::result() const {
  MetricSet out;
  const double n = count_ > 0 ? static_cast<double>(count_) : 1.0;
  for (size_t i = 0; i < hit_ks_.size(); ++i) out["hr@" + std::to_string(hit_ks_[i])] = hit_sum_[i] / n;
  for (size_t i = 0; i < ndcg_ks_.size(); ++i) out["ndcg@" + std::to_string(ndcg_ks_[i])] = ndcg_sum_[i] / n;
  out["non_item_share"] = beams_ > 0 ? static_cast<double>(non_items_) / static_cast<double>(beams_) : 0.0;
  return out;
}

std::vector<double> GenerativeMetrics::sums() const {
  std::vector<double> out(hit_sum_.begin(), hit_sum_.end());
  out.insert(out.end(), ndcg_sum_.begin(), ndcg_sum_.end());
  out.push_back(static_cast<double>(non_items_));
  out.push_back(static_cast<double>(beams_));
  out.push_back(static_cast<double>(count_));
  return out;
}

void GenerativeMetrics::set_sums(const std::vector<double>& sums) {
  const size_t h = hit_sum_.size(), d = ndcg_sum_.size();
  if (sums.size() != h + d + 3)
    throw std::invalid_argument("GenerativeMetrics::set_sums: expected " + std::to_string(h + d + 3) +
                                " values, got " + std::to_string(sums.size()));
  for (size_t i = 0; i < h; ++i) hit_sum_[i] = sums[i];
  for (size_t i = 0; i < d; ++i) ndcg_sum_[i] = sums[h + i];
  non_items_ = std::llround(sums[h + d]);
  beams_ = std::llround(sums[h + d + 1]);
  count_ = std::llround(sums[h + d + 2]);
}

}  // namespace seqrec::eval

// Multi-positive ranking metrics (definitions in ranking_metrics.h).
#include "seqrec/eval/ranking_metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace seqrec::eval {

std::vector<int64_t> positive_ranks(const std::vector<float>& scores, const std::vector<int64_t>& positives) {
  std::vector<char> is_positive(scores.size(), 0);
  for (int64_t p : positives) is_positive.at(static_cast<size_t>(p)) = 1;
  std::vector<int64_t> ranks;
  ranks.reserve(positives.size());
  for (size_t i = 0; i < positives.size(); ++i) {
    const float s = scores[static_cast<size_t>(positives[i])];
    int64_t rank = 0;
    for (size_t c = 0; c < scores.size(); ++c)
      if (!is_positive[c] && scores[c] >= s) ++rank;
    for (size_t j = 0; j < positives.size(); ++j) {
      const float t = scores[static_cast<size_t>(positives[j])];
      if (t > s || (t == s && j < i)) ++rank;
    }
    ranks.push_back(rank);
  }
  return ranks;
}

RankingAccumulator::RankingAccumulator(std::vector<int64_t> ks)
    : ks_(std::move(ks)), recall_sum_(ks_.size()), ndcg_sum_(ks_.size()), mrr_sum_(ks_.size()) {
  for (int64_t k : ks_)
    if (k < 1) throw std::invalid_argument("RankingAccumulator: k must be >= 1, got " + std::to_string(k));
}

void RankingAccumulator::add(const std::vector<float>& scores, const std::vector<int64_t>& positives) {
  add_ranks(positive_ranks(scores, positives));
}

void RankingAccumulator::add_ranks(const std::vector<int64_t>& ranks) {
  if (ranks.empty()) throw std::invalid_argument("RankingAccumulator: a query needs at least one positive");
  const int64_t best = *std::min_element(ranks.begin(), ranks.end());
  const auto n = static_cast<int64_t>(ranks.size());
  for (size_t i = 0; i < ks_.size(); ++i) {
    const int64_t k = ks_[i];
    double hits = 0, dcg = 0, idcg = 0;
    for (int64_t r : ranks)
      if (r < k) {
        hits += 1;
        dcg += 1.0 / std::log2(double(r) + 2.0);
      }
    for (int64_t j = 0; j < std::min(n, k); ++j) idcg += 1.0 / std::log2(double(j) + 2.0);
    recall_sum_[i] += hits / double(n);
    ndcg_sum_[i] += dcg / idcg;
    if (best < k) mrr_sum_[i] += 1.0 / double(best + 1);
  }
  ++count_;
}

MetricSet RankingAccumulator::result() const {
  MetricSet m;
  const double n = count_ > 0 ? double(count_) : 1.0;
  for (size_t i = 0; i < ks_.size(); ++i) {
    const std::string k = std::to_string(ks_[i]);
    m["recall@" + k] = recall_sum_[i] / n;
    m["ndcg@" + k] = ndcg_sum_[i] / n;
    m["mrr@" + k] = mrr_sum_[i] / n;
  }
  return m;
}

}  // namespace seqrec::eval

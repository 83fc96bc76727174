// Metrics of the `generative` protocol (LC-Rec's evaluate.py, no torch): the ranked beams of one
// query are item ids, best first; a beam that is no item (a negative id) is a miss that still takes
// its rank slot. Binary relevance: HR@K = [target among the first K beams], NDCG@K = 1/log2(r+2)
// for the target at 0-based beam r < K.
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/eval/metrics.h"

namespace seqrec::eval {

/// 0-based rank of the first beam equal to `target`, or -1 when no beam is.
int64_t generative_rank(const std::vector<int64_t>& ranked_items, int64_t target);

/// Accumulates per-query generative metrics and averages them.
class GenerativeMetrics {
 public:
  /// Cut-offs (each >= 1): hr@k for each of hit_ks, ndcg@k for each of ndcg_ks (LC-Rec: hit@1,5,10
  /// and ndcg@5,10). Throws std::invalid_argument for a cut-off < 1.
  explicit GenerativeMetrics(std::vector<int64_t> hit_ks = {1, 5, 10}, std::vector<int64_t> ndcg_ks = {5, 10});
  /// Adds one query: its ranked beams (item id per beam, negative = not an item) and its target item.
  void add(const std::vector<int64_t>& ranked_items, int64_t target);
  /// Merges another accumulator with the same cut-offs.
  void merge(const GenerativeMetrics& other);
  /// Queries added.
  int64_t count() const { return count_; }
  /// hr@k, ndcg@k averaged over queries, and non_item_share = beams that are no item / all beams
  /// (0 for no query).
  MetricSet result() const;
  /// Raw sums in a fixed order (hr@k..., ndcg@k..., non-item beams, beams, queries), for reduction.
  std::vector<double> sums() const;
  /// Inverse of sums(); throws std::invalid_argument for a wrong length.
  void set_sums(const std::vector<double>& sums);

 private:
  std::vector<int64_t> hit_ks_, ndcg_ks_;
  std::vector<double> hit_sum_, ndcg_sum_;
  int64_t non_items_ = 0;
  int64_t beams_ = 0;
  int64_t count_ = 0;
};

}  // namespace seqrec::eval

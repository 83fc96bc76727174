// Metrics of the `generative` protocol (LC-Rec's evaluate.py, no torch): the ranked beams of one
// query are item ids, best first; a beam that is no item (a negative id) is a miss that still takes
// its rank slot. Binary relevance: HR@K = [target among the first K beams], NDCG@K = 1/log2(r+2)
// for the target at 0-based beam r < K, MRR = 1/(r+1) (0 when no beam is the target).
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/eval/metrics.h"

namespace seqrec::eval {

/// 0-based rank of the first beam equal to `target`, or -1 when no beam is.
int64_t generative_rank(const std::vector<int64_t>& ranked_items, int64_t target);

/// Accumulates per-query generative metrics (a MetricAccumulator over beam ranks) and the share of
/// beams that are no item.
class GenerativeMetrics {
 public:
  /// Cut-offs (each >= 1): hr@k and ndcg@k for each (LC-Rec reports hit@1,5,10 and ndcg@5,10).
  explicit GenerativeMetrics(std::vector<int64_t> ks = {1, 5, 10});
  /// Adds one query: its ranked beams (item id per beam, negative = not an item) and its target item.
  void add(const std::vector<int64_t>& ranked_items, int64_t target);
  /// Merges another accumulator with the same cut-offs.
  void merge(const GenerativeMetrics& other);
  /// Queries added.
  int64_t count() const { return ranks_.count(); }
  /// hr@k, ndcg@k, mrr averaged over queries, and non_item_share = beams that are no item / all
  /// beams (0 for no query).
  MetricSet result() const;
  /// Raw sums (MetricAccumulator::sums, then non-item beams, beams), for cross-process reduction.
  std::vector<double> sums() const;
  /// Inverse of sums(); throws std::invalid_argument for a wrong length.
  void set_sums(const std::vector<double>& sums);

 private:
  MetricAccumulator ranks_;
  int64_t non_items_ = 0;
  int64_t beams_ = 0;
};

}  // namespace seqrec::eval

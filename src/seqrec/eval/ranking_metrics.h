// Ranking metrics for queries with one or several relevant candidates (LSVCR's comment ranking; no
// torch): recall@k, ndcg@k and mrr@k.
//
// For a query with candidates scored s and positives P (|P| >= 1), each positive p gets the 0-based
// rank  #{negatives n: s_n >= s_p} + #{positives q: s_q > s_p, or s_q == s_p and q before p}:
// ties with negatives are pessimistic (as eval/metrics.h), ties among positives keep their order, so
// the positives' ranks are distinct. Then, at a cut-off k:
//   recall@k = #{p: rank_p < k} / |P|
//   ndcg@k   = sum_{p: rank_p < k} 1 / log2(rank_p + 2)  /  sum_{i < min(|P|, k)} 1 / log2(i + 2)
//   mrr@k    = 1 / (1 + min_p rank_p)  if that rank is < k, else 0
// With one positive, recall@k is hr@k and ndcg@k is eval/metrics.h's ndcg@k.
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/eval/metrics.h"

namespace seqrec::eval {

/// The 0-based ranks of the positives (in the order of `positives`) under the rule above.
std::vector<int64_t> positive_ranks(const std::vector<float>& scores, const std::vector<int64_t>& positives);

/// Averages recall@k, ndcg@k and mrr@k over queries.
class RankingAccumulator {
 public:
  /// ks: cut-offs (each >= 1).
  explicit RankingAccumulator(std::vector<int64_t> ks);
  /// Adds one query: candidate scores and the indices of its positives (>= 1, distinct).
  void add(const std::vector<float>& scores, const std::vector<int64_t>& positives);
  /// Adds one query given the positives' ranks (positive_ranks) and the number of positives.
  void add_ranks(const std::vector<int64_t>& ranks);
  /// Number of queries added.
  int64_t count() const { return count_; }
  /// {"recall@k", "ndcg@k", "mrr@k"} averages (0 when no query was added).
  MetricSet result() const;

 private:
  std::vector<int64_t> ks_;
  std::vector<double> recall_sum_, ndcg_sum_, mrr_sum_;
  int64_t count_ = 0;
};

}  // namespace seqrec::eval

// Ranking metrics for one relevant item per query (no torch). Rank is 0-based.
//
// Tie rule (documented, pessimistic): the rank of the target is the number of *other* candidates
// whose score is >= the target's score. A model that scores everything equally gets rank N-1.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace seqrec::eval {

/// Named metric values, e.g. {"hr@10": 0.8, "ndcg@10": 0.6, "mrr": 0.4}.
using MetricSet = std::map<std::string, double>;

/// Accumulates per-query metrics from target ranks and averages them.
class MetricAccumulator {
 public:
  /// ks: cut-offs (each >= 1). Produces hr@k, ndcg@k for each k and mrr.
  explicit MetricAccumulator(std::vector<int64_t> ks);
  /// Adds one query whose target has 0-based rank `rank` (a rank >= num candidates is a miss).
  void add(int64_t rank);
  /// Merges another accumulator with the same ks.
  void merge(const MetricAccumulator& other);
  /// Number of queries added.
  int64_t count() const { return count_; }
  /// Averages (0 when no query was added).
  MetricSet result() const;
  /// Raw sums in a fixed order (hr@k..., ndcg@k..., mrr, count), for cross-process reduction.
  std::vector<double> sums() const;
  /// Inverse of sums().
  void set_sums(const std::vector<double>& sums);

 private:
  std::vector<int64_t> ks_;
  std::vector<double> hr_sum_, ndcg_sum_;
  double mrr_sum_ = 0;
  int64_t count_ = 0;
};

/// Rank of scores[target] among scores under the tie rule above.
int64_t rank_of(const std::vector<float>& scores, int64_t target);

/// One JSON line: {"split":..., "protocol":..., "users":N, "hr@5":..., "hr@10":...}: the metrics in
/// report.h's metric_name_less order (by family, then numerically by k), with 6 significant digits,
/// NaN/Inf as null.
std::string to_json_line(const MetricSet& metrics, const std::string& split,
                         const std::string& protocol, int64_t users);

}  // namespace seqrec::eval

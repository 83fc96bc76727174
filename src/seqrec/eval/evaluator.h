// Evaluation protocols over a model: `full` (rank every item, history masked) and `sampled`
// (target among 1 + N sampled negatives). The metric code only sees ranks.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"
#include "seqrec/eval/metrics.h"
#include "seqrec/models/recommender.h"

namespace seqrec::eval {

/// Result of one evaluation run.
struct EvalResult {
  MetricSet metrics;      ///< averaged metrics
  int64_t users = 0;      ///< queries evaluated
  double seconds = 0;     ///< wall time
};

/// Which queries this process evaluates (data parallel), and how the ranks' metric sums meet.
struct EvalShard {
  int64_t rank = 0;                  ///< this process takes queries rank, rank + W, ...
  int64_t world_size = 1;            ///< W
  /// Element-wise sum over ranks (an all-reduce); required when world_size > 1.
  std::function<std::vector<double>(const std::vector<double>&)> sum;
};

/// Evaluates `model` on `split` of `store` under `options` (model is put in eval mode and left so).
/// With a cold-start mask ([V+1], data::cold_items), the metrics also hold cold_<metric> over the
/// queries whose target is a held-out item, and cold_users (their number).
/// Sharded: each rank ranks its queries and the per-query metric sums and the query count are
/// summed over ranks before averaging, so the result equals the single-process one exactly (up to
/// the order of additions).
EvalResult evaluate(models::SequenceRecommenderImpl& model, const data::InteractionStore& store,
                    data::Split split, const config::EvalOptions& options, int64_t max_seq_len,
                    const std::vector<char>& cold_items = {}, const EvalShard& shard = {});

/// Scores of every item for the last position of each history row: [B, V+1], with padding and
/// (per `history_mask`) the history items set to -inf, except the items in `keep` [B] (the targets;
/// pass an undefined tensor to keep nothing).
torch::Tensor full_scores(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch,
                          const std::vector<data::Span<int32_t>>& histories, config::HistoryMask history_mask,
                          int64_t max_seq_len, const torch::Tensor& keep);

/// Sampled candidates of one query: the target first, then `num_negatives` distinct-from-history
/// items drawn uniformly, a function of (seed, user) only.
std::vector<int64_t> sampled_candidates(const data::EvalQuery& query, int64_t num_items, int64_t num_negatives,
                                        int64_t seed);

/// Top-k item ids and scores of a history (most recent last), history items excluded.
struct TopK {
  std::vector<int64_t> ids;
  std::vector<float> scores;
};
/// `user` (dense index) is the batch's user id, for models with per-user state (PerSRec caches);
/// `history_ts` the history's timestamps (empty: none). The request's time, which HSTU's time bias
/// reads as the target's, is taken to be the newest event's.
TopK recommend(models::SequenceRecommenderImpl& model, const std::vector<int32_t>& history, int64_t k,
               int64_t max_seq_len, int64_t user = 0, const std::vector<int64_t>& history_ts = {});

}  // namespace seqrec::eval

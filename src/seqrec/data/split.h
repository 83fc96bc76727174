// Leave-one-out split over an InteractionStore (no torch).
//
// For a user with n events: n >= 3 -> train = items[0, n-2), valid target = items[n-2] (history =
// items[0, n-2)), test target = items[n-1] (history = items[0, n-1), valid item included).
// Users with n < 3 are training-only (as in the SASRec code) and are never evaluated.
// With holdout 1 (GR's code, `ignore_last_n = 1`) only the test item is held out: train =
// items[0, n-1) and there is no validation split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"

namespace seqrec::data {

/// Which held-out item an evaluation targets.
enum class Split { kValid, kTest };

/// "valid" / "test" -> Split; throws ConfigError(path) otherwise.
Split parse_split(const std::string& name, const std::string& path);
const char* split_name(Split split);

/// Number of leading items of a user with n events that are used for training, when the last
/// `holdout` items of every evaluated user (n >= 3) are held out: 2 = valid and test, 1 = test.
inline int64_t train_length(int64_t n, int64_t holdout = 2) { return n >= 3 ? n - holdout : n; }

/// One evaluation query: predict `target` from everything the user did before it.
struct EvalQuery {
  int64_t user = 0;            ///< dense user index
  Span<int32_t> history;       ///< all items before the target, oldest first
  Span<int64_t> history_ts;    ///< their timestamps (empty without timestamps)
  int32_t target = 0;          ///< the held-out item
  int64_t target_ts = 0;       ///< its timestamp (0 without timestamps)
};

/// Queries of every user with n >= 3 (in user order) for a split; with limit > 0, only the first
/// `limit` of them (a 9M-user store is not copied to evaluate 10,000 users).
std::vector<EvalQuery> eval_queries(const InteractionStore& store, Split split, int64_t limit = 0);

/// PerSRec's training rows under `train_feat_max_length` N: each user's training part
/// items[0, train_length(n, holdout)) cut to its last N items, then to Python's [begin:end] of those
/// (begin = end = 0: no cut), in memory. Nothing in them is held out (train on them with holdout 0).
InteractionStore train_rows(const InteractionStore& store, int64_t holdout, int64_t max_length, int64_t begin,
                            int64_t end);

/// Occurrences of each item in the training parts, [V+1] (index 0 = 0).
std::vector<int64_t> train_item_counts(const InteractionStore& store, int64_t holdout = 2);

/// Cold-start hold-out: a [V+1] mask with round(share * V) items set, drawn uniformly with `seed`
/// (a function of (num_items, share, seed) only). Empty when share is 0.
std::vector<char> cold_items(int64_t num_items, double share, uint64_t seed);

}  // namespace seqrec::data

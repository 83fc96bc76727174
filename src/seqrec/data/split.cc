// Leave-one-out split.
#include "seqrec/data/split.h"

#include <algorithm>

#include "seqrec/common/error.h"
#include "seqrec/common/random.h"

#include <cmath>

namespace seqrec::data {

Split parse_split(const std::string& name, const std::string& path) {
  if (name == "valid") return Split::kValid;
  if (name == "test") return Split::kTest;
  throw ConfigError(path, "'" + name + "' is not one of: valid, test");
}

const char* split_name(Split split) { return split == Split::kValid ? "valid" : "test"; }

std::vector<EvalQuery> eval_queries(const InteractionStore& store, Split split, int64_t limit) {
  std::vector<EvalQuery> queries;
  queries.reserve(limit > 0 ? std::min(limit, store.num_users()) : store.num_users());
  const int64_t drop = split == Split::kValid ? 2 : 1;  // events after the history
  for (int64_t u = 0; u < store.num_users(); ++u) {
    Span<int32_t> items = store.items(u);
    if (items.size() < 3) continue;
    EvalQuery q;
    q.user = u;
    const int64_t h = items.size() - drop;  // history length
    q.history = {items.ptr, h};
    q.target = items[h];
    if (store.has_timestamps()) {
      Span<int64_t> ts = store.timestamps(u);
      q.history_ts = {ts.ptr, h};
      q.target_ts = ts[h];
    }
    queries.push_back(q);
    if (limit > 0 && static_cast<int64_t>(queries.size()) == limit) break;
  }
  return queries;
}

InteractionStore train_rows(const InteractionStore& store, int64_t holdout, int64_t max_length, int64_t begin,
                            int64_t end) {
  return slice_rows(store, [&](int64_t n) {
    const int64_t t = train_length(n, holdout), first = std::max<int64_t>(0, t - max_length);
    const auto [b, e] = python_slice(t - first, begin, end);
    return std::pair<int64_t, int64_t>{first + b, first + e};
  });
}

std::vector<int64_t> train_item_counts(const InteractionStore& store, int64_t holdout) {
  std::vector<int64_t> counts(store.num_items() + 1, 0);
  for (int64_t u = 0; u < store.num_users(); ++u) {
    Span<int32_t> items = store.items(u);
    const int64_t n = train_length(items.size(), holdout);
    for (int64_t i = 0; i < n; ++i) ++counts[items[i]];
  }
  return counts;
}

std::vector<char> cold_items(int64_t num_items, double share, uint64_t seed) {
  if (share <= 0) return {};
  std::vector<int64_t> ids(num_items);
  for (int64_t i = 0; i < num_items; ++i) ids[i] = i + 1;
  Rng rng(derive_seed({seed, 0xc01dULL, static_cast<uint64_t>(num_items)}));
  shuffle(ids.begin(), ids.end(), rng);
  std::vector<char> mask(num_items + 1, 0);
  const auto n = static_cast<int64_t>(std::llround(share * static_cast<double>(num_items)));
  for (int64_t i = 0; i < n; ++i) mask[ids[i]] = 1;
  return mask;
}

}  // namespace seqrec::data

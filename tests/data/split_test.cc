// Tests of the leave-one-out split (split.h): eval_queries, train_length, train_item_counts,
// cold_items and PerSRec's train_rows, against hand-built stores (torch-free).
#include "seqrec/data/split.h"

#include <algorithm>
#include <vector>

#include "seqrec/data/interaction_store.h"
#include "data/store_support.h"
#include "support.h"

namespace seqrec::data {
namespace {

using testing::make_store;

TEST(TrainLength, HoldsOutOnlyFromUsersWithThreeOrMoreEvents) {
  EXPECT_EQ(train_length(5), 3);
  EXPECT_EQ(train_length(5, 1), 4);
  EXPECT_EQ(train_length(3), 1);
  EXPECT_EQ(train_length(2), 2);  // training-only users keep everything
  EXPECT_EQ(train_length(1, 1), 1);
  EXPECT_EQ(train_length(0), 0);
}

TEST(EvalQueries, LimitTakesTheFirstUsersInOrder) {
  auto store = make_store({{1, 2, 3}, {4, 5}, {6, 7, 8, 9}, {1, 3, 5}}, 9);
  auto first = eval_queries(store, Split::kTest, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].user, 0);
  EXPECT_EQ(first[1].user, 2);  // user 1 is training-only
  EXPECT_EQ(first[1].target, 9);
  EXPECT_EQ(eval_queries(store, Split::kTest).size(), 3u);
  EXPECT_TRUE(first[0].history_ts.empty());  // no timestamps in this store
  EXPECT_EQ(first[0].target_ts, 0);
}

TEST(ColdItems, ShareSeedAndNeverPadding) {
  auto a = cold_items(1000, 0.1, 3);
  ASSERT_EQ(a.size(), 1001u);
  EXPECT_EQ(a[0], 0);
  EXPECT_EQ(std::count(a.begin(), a.end(), 1), 100);
  EXPECT_EQ(cold_items(1000, 0.1, 3), a);   // a function of (V, share, seed)
  EXPECT_NE(cold_items(1000, 0.1, 4), a);
  EXPECT_TRUE(cold_items(1000, 0.0, 3).empty());
  auto small = cold_items(7, 0.5, 1);
  EXPECT_EQ(std::count(small.begin(), small.end(), 1), 4);  // round(3.5)
}

TEST(EvalQueries, ValidAndTestHistoriesAndTargets) {
  auto store = make_store({{1, 2, 3, 4, 5}, {6, 7}, {8, 9, 10}}, 10, /*timestamps=*/true);
  auto valid = eval_queries(store, Split::kValid);
  ASSERT_EQ(valid.size(), 2u);  // user 1 has < 3 events
  EXPECT_EQ(valid[0].user, 0);
  EXPECT_EQ(std::vector<int32_t>(valid[0].history.begin(), valid[0].history.end()),
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(valid[0].target, 4);
  EXPECT_EQ(std::vector<int64_t>(valid[0].history_ts.begin(), valid[0].history_ts.end()),
            (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(valid[0].target_ts, 3);
  EXPECT_EQ(valid[1].user, 2);
  EXPECT_EQ(valid[1].history.size(), 1);
  EXPECT_EQ(valid[1].history[0], 8);
  EXPECT_EQ(valid[1].target, 9);
  EXPECT_EQ(valid[1].target_ts, 201);

  auto test = eval_queries(store, Split::kTest);
  ASSERT_EQ(test.size(), 2u);
  EXPECT_EQ(std::vector<int32_t>(test[0].history.begin(), test[0].history.end()),
            (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(test[0].target, 5);
  EXPECT_EQ(test[0].target_ts, 4);
  EXPECT_EQ(std::vector<int32_t>(test[1].history.begin(), test[1].history.end()),
            (std::vector<int32_t>{8, 9}));
  EXPECT_EQ(test[1].target, 10);

  EXPECT_EQ(parse_split("valid", "x"), Split::kValid);
  EXPECT_EQ(parse_split("test", "x"), Split::kTest);
  ASSERT_THROWS_WITH(parse_split("train", "--split"), "--split");
}

TEST(TrainItemCounts, CountsOnlyTrainingParts) {
  // user 0: 1 2 3 | 4 5 -> counts 1,2,3; user 1 (n=2): 2 3 both; user 2: 3 | 6 7.
  auto store = make_store({{1, 2, 3, 4, 5}, {2, 3}, {3, 6, 7}}, 7);
  EXPECT_EQ(train_item_counts(store), (std::vector<int64_t>{0, 1, 2, 3, 0, 0, 0, 0}));
  // holdout 1: the validation items 4 (user 0) and 6 (user 2) are counted too.
  EXPECT_EQ(train_item_counts(store, 1), (std::vector<int64_t>{0, 1, 2, 3, 1, 0, 1, 0}));
}

/// PerSRec's loader with train_feat_max_length N: seq[:-holdout][-N:][begin:end]; short users
/// (n < 3) keep everything (they are training-only); the window is cut from the N kept items, not
/// from the whole row (the MerRec config's training window starts 2 items before the eval window).
TEST(TrainRows, CutTheLastNTrainingItemsThenTheWindow) {
  StoreData d;
  d.num_items = 12;
  d.has_timestamps = true;
  d.user_offsets = {0, 10, 12};  // rows of 10 and 2 events
  d.item_ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  for (int64_t i = 1; i <= 12; ++i) d.timestamps.push_back(100 * i);
  const InteractionStore store = InteractionStore::from_data(d);
  auto row = [](const InteractionStore& s, int64_t u) {
    return std::vector<int32_t>(s.items(u).begin(), s.items(u).end());
  };
  // [1..8] (2 held out) -> last 5: [4..8] -> [-4:-1]: [5, 6, 7]
  InteractionStore t = train_rows(store, 2, 5, -4, -1);
  EXPECT_EQ(row(t, 0), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(std::vector<int64_t>(t.timestamps(0).begin(), t.timestamps(0).end()),
            (std::vector<int64_t>{500, 600, 700}));
  EXPECT_EQ(row(t, 1), (std::vector<int32_t>{11}));  // n = 2: training-only, all kept, then [-4:-1] of [11, 12]
  EXPECT_EQ(row(train_rows(store, 2, 5, 0, 0), 1), (std::vector<int32_t>{11, 12}));
  EXPECT_EQ(row(train_rows(store, 1, 100, 0, 0), 0), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(row(train_rows(store, 2, 3, 0, 0), 0), (std::vector<int32_t>{6, 7, 8}));
  EXPECT_EQ(row(train_rows(store, 2, 6, 1, 3), 0), (std::vector<int32_t>{4, 5}));  // [3..8][1:3]
  // The whole-row window differs: [1..10][-4:-1] = [7, 8, 9] (valid 8 and test 9 follow it).
  EXPECT_EQ(row(window_rows(store, -4, -1), 0), (std::vector<int32_t>{7, 8, 9}));
  EXPECT_EQ(t.num_users(), 2);
  EXPECT_EQ(t.num_items(), 12);
}

}  // namespace
}  // namespace seqrec::data

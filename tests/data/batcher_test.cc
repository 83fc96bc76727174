// Tests of the batchers (build_train_samples, TrainBatcher, make_eval_batch); the split itself is
// tested in split_test.cc.
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "seqrec/data/batcher.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"
#include "data/store_support.h"
#include "support.h"

namespace seqrec::data {
namespace {

using testing::make_store;

/// Many users with varied lengths (1..12) over 30 items, deterministic.
InteractionStore varied_store(int64_t num_users = 41) {
  std::vector<std::vector<int32_t>> seqs;
  for (int64_t u = 0; u < num_users; ++u) {
    const int64_t n = 1 + (u * 7) % 12;
    std::vector<int32_t> s;
    for (int64_t i = 0; i < n; ++i) s.push_back(static_cast<int32_t>(1 + (u * 5 + i * 3) % 30));
    seqs.push_back(s);
  }
  return make_store(seqs, 30);
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

/// Drains one epoch; returns the batches.
std::vector<SequenceBatch> drain(TrainBatcher& b, int64_t epoch) {
  b.start_epoch(epoch);
  std::vector<SequenceBatch> out;
  SequenceBatch batch;
  while (b.next(&batch)) out.push_back(batch);
  return out;
}

bool same_sample(const TrainSample& a, const TrainSample& b) {
  return a.user == b.user && a.begin == b.begin && a.end == b.end;
}

TEST(BuildTrainSamples, LastLPlusOneOfTrainingPart) {
  // user 0: 7 items -> train part = first 5 -> with L=3 the last 4 of them: [1, 5).
  // user 1: 2 items (n < 3: trains on all) -> [0, 2).
  // user 2: 1 item -> no sample. user 3: 3 items -> train length 1 -> no sample.
  // user 4: 4 items -> train length 2 -> [0, 2). user 5: 5 items -> train 3 <= L+1 -> [0, 3).
  auto store = make_store({{1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10}, {1, 2, 3}, {4, 5, 6, 7}, {1, 2, 3, 4, 5}}, 10);
  auto s = build_train_samples(store, 3, false);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_TRUE(same_sample(s[0], {0, 1, 5}));
  EXPECT_TRUE(same_sample(s[1], {1, 0, 2}));
  EXPECT_TRUE(same_sample(s[2], {4, 0, 2}));
  EXPECT_TRUE(same_sample(s[3], {5, 0, 3}));
}

TEST(BuildTrainSamples, HoldoutOneTrainsOnTheValidationItem) {
  // GR's ignore_last_n = 1: only the test item is held out. user 0: 7 items -> train part = first 6
  // -> with L=3 the last 4: [2, 6) (target 6 = the validation item of holdout 2); user 1 (n < 3)
  // trains on all; user 3: 3 items -> train length 2 -> [0, 2).
  auto store = make_store({{1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10}, {1, 2, 3}}, 10);
  auto s = build_train_samples(store, 3, false, {}, /*holdout=*/1);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_TRUE(same_sample(s[0], {0, 2, 6}));
  EXPECT_TRUE(same_sample(s[1], {1, 0, 2}));
  EXPECT_TRUE(same_sample(s[2], {3, 0, 2}));
  EXPECT_EQ(train_length(7, 1), 6);
  EXPECT_EQ(train_length(7, 2), 5);
  EXPECT_EQ(train_length(2, 1), 2);
}

TEST(BuildTrainSamples, ChunksDropOldestRemainder) {
  // 13 items -> train length 11; L=3 -> span 4; 11 mod 4 = 3 oldest dropped -> [3,7), [7,11).
  // 10 items -> train 8 -> 8 mod 4 = 0 -> [0,4), [4,8). 5 items -> train 3 <= 4 -> one sample [0,3).
  std::vector<int32_t> a, b;
  for (int i = 1; i <= 13; ++i) a.push_back(i);
  for (int i = 1; i <= 10; ++i) b.push_back(i);
  auto store = make_store({a, b, {1, 2, 3, 4, 5}}, 13);
  auto s = build_train_samples(store, 3, true);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_TRUE(same_sample(s[0], {0, 3, 7}));
  EXPECT_TRUE(same_sample(s[1], {0, 7, 11}));
  EXPECT_TRUE(same_sample(s[2], {1, 0, 4}));
  EXPECT_TRUE(same_sample(s[3], {1, 4, 8}));
  EXPECT_TRUE(same_sample(s[4], {2, 0, 3}));
  // Without chunking the same store gives the last L+1 only.
  auto plain = build_train_samples(store, 3, false);
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_TRUE(same_sample(plain[0], {0, 7, 11}));
  EXPECT_TRUE(same_sample(plain[1], {1, 4, 8}));
}

TEST(TrainBatcher, LeftPaddingTargetsAndFullWidthWithoutBucketing) {
  // user 0: 7 items -> training part 1..5 -> sample [0,5): input 1 2 3 4, targets 2 3 4 5 (fills L=4).
  // user 1: 2 items -> input 8, target 9 (three pads).
  auto store = make_store({{1, 2, 3, 4, 5, 6, 7}, {8, 9}}, 10);
  TrainBatcherOptions o;
  o.max_seq_len = 4;
  o.batch_size = 8;
  o.length_bucketing = false;
  TrainBatcher b(store, o);
  ASSERT_EQ(b.num_samples(), 2);
  ASSERT_EQ(b.batches_per_epoch(), 1);
  auto batches = drain(b, 0);
  ASSERT_EQ(batches.size(), 1u);
  const auto& batch = batches[0];
  ASSERT_EQ(batch.item_ids.sizes(), (torch::IntArrayRef{2, 4}));
  EXPECT_EQ(batch.position_offset, 0);
  EXPECT_FALSE(batch.negatives.defined());
  auto users = to_vec(batch.user_ids);
  std::map<int64_t, std::pair<std::vector<int64_t>, std::vector<int64_t>>> rows;
  for (int64_t r = 0; r < 2; ++r) rows[users[r]] = {to_vec(batch.item_ids[r]), to_vec(batch.targets[r])};
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].first, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(rows[0].second, (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(rows[1].first, (std::vector<int64_t>{0, 0, 0, 8}));
  EXPECT_EQ(rows[1].second, (std::vector<int64_t>{0, 0, 0, 9}));
}

TEST(TrainBatcher, BucketingTrimsWidthAndSetsPositionOffset) {
  auto store = make_store({{1, 2, 3, 4, 5, 6, 7}, {8, 9}, {3, 4, 5, 6, 7}}, 10, /*timestamps=*/true);
  TrainBatcherOptions o;
  o.max_seq_len = 10;
  o.batch_size = 8;
  TrainBatcher b(store, o);
  auto batches = drain(b, 0);
  ASSERT_EQ(batches.size(), 1u);
  const auto& batch = batches[0];
  // Longest input: user 0 has 5 training items -> 4 inputs.
  ASSERT_EQ(batch.item_ids.size(1), 4);
  EXPECT_EQ(batch.position_offset, 10 - 4);
  auto users = to_vec(batch.user_ids);
  for (int64_t r = 0; r < 3; ++r) {
    auto ids = to_vec(batch.item_ids[r]);
    auto tgt = to_vec(batch.targets[r]);
    auto ts = to_vec(batch.timestamps[r]);
    auto tts = to_vec(batch.target_timestamps[r]);
    if (users[r] == 0) {
      EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 3, 4}));
      EXPECT_EQ(tgt, (std::vector<int64_t>{2, 3, 4, 5}));
      EXPECT_EQ(ts, (std::vector<int64_t>{0, 1, 2, 3}));
      EXPECT_EQ(tts, (std::vector<int64_t>{1, 2, 3, 4}));
    } else if (users[r] == 1) {
      EXPECT_EQ(ids, (std::vector<int64_t>{0, 0, 0, 8}));
      EXPECT_EQ(tgt, (std::vector<int64_t>{0, 0, 0, 9}));
      EXPECT_EQ(ts, (std::vector<int64_t>{0, 0, 0, 100}));
      EXPECT_EQ(tts, (std::vector<int64_t>{0, 0, 0, 101}));
    } else {
      ASSERT_EQ(users[r], 2);
      EXPECT_EQ(ids, (std::vector<int64_t>{0, 0, 3, 4}));
      EXPECT_EQ(tgt, (std::vector<int64_t>{0, 0, 4, 5}));
    }
  }
}

TEST(TrainBatcher, EverySampleOnceAndTargetsAreNextItems) {
  auto store = varied_store();
  TrainBatcherOptions o;
  o.max_seq_len = 6;
  o.batch_size = 4;
  TrainBatcher b(store, o);
  auto samples = build_train_samples(store, 6, false);
  ASSERT_EQ(b.num_samples(), static_cast<int64_t>(samples.size()));
  std::set<int64_t> expected_users;
  for (const auto& s : samples) expected_users.insert(s.user);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    auto batches = drain(b, epoch);
    EXPECT_EQ(static_cast<int64_t>(batches.size()), b.batches_per_epoch());
    std::multiset<int64_t> seen;
    for (const auto& batch : batches) {
      const int64_t w = batch.item_ids.size(1);
      EXPECT_EQ(batch.position_offset, 6 - w);
      EXPECT_LE(batch.item_ids.size(0), 4);
      auto users = to_vec(batch.user_ids);
      for (int64_t r = 0; r < batch.item_ids.size(0); ++r) {
        seen.insert(users[r]);
        auto ids = to_vec(batch.item_ids[r]);
        auto tgt = to_vec(batch.targets[r]);
        Span<int32_t> items = store.items(users[r]);
        const auto& s = *std::find_if(samples.begin(), samples.end(),
                                      [&](const TrainSample& x) { return x.user == users[r]; });
        const int64_t len = s.end - s.begin - 1;
        for (int64_t t = 0; t < w; ++t) {
          if (t < w - len) {
            EXPECT_EQ(ids[t], 0);
            EXPECT_EQ(tgt[t], 0);
          } else {
            const int64_t k = s.begin + t - (w - len);
            EXPECT_EQ(ids[t], items[k]);
            EXPECT_EQ(tgt[t], items[k + 1]);
          }
        }
      }
    }
    EXPECT_EQ(seen.size(), samples.size());
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()), expected_users);
  }
}

std::vector<int64_t> user_order(TrainBatcher& b, int64_t epoch) {
  std::vector<int64_t> order;
  for (const auto& batch : drain(b, epoch)) {
    auto u = to_vec(batch.user_ids);
    order.insert(order.end(), u.begin(), u.end());
  }
  return order;
}

TEST(TrainBatcher, OrderIsAFunctionOfSeedAndEpoch) {
  auto store = varied_store();
  TrainBatcherOptions o;
  o.max_seq_len = 6;
  o.batch_size = 3;
  o.num_negatives = 2;
  TrainBatcher b1(store, o), b2(store, o);
  auto a3 = user_order(b1, 3);
  auto a4 = user_order(b1, 4);
  EXPECT_EQ(a3, user_order(b2, 3));
  EXPECT_NE(a3, a4);
  // Negatives too are reproducible for (seed, epoch).
  auto x = drain(b1, 5), y = drain(b2, 5);
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_TRUE(torch::equal(x[i].item_ids, y[i].item_ids));
    EXPECT_TRUE(torch::equal(x[i].negatives, y[i].negatives));
  }
  TrainBatcherOptions o2 = o;
  o2.seed = 43;
  TrainBatcher b3(store, o2);
  EXPECT_NE(a3, user_order(b3, 3));
}

TEST(TrainBatcher, NegativesAvoidTrainingItems) {
  // 30 items; each user has seen 8 distinct items, so a uniform sampler would hit them often.
  std::vector<std::vector<int32_t>> seqs;
  for (int u = 0; u < 20; ++u) {
    std::vector<int32_t> s;
    for (int i = 0; i < 10; ++i) s.push_back(1 + (u + 3 * i) % 30);
    seqs.push_back(s);
  }
  auto store = make_store(seqs, 30);
  TrainBatcherOptions o;
  o.max_seq_len = 8;
  o.batch_size = 5;
  o.num_negatives = 7;
  o.exclude_history = true;
  TrainBatcher b(store, o);
  int64_t checked = 0;
  for (const auto& batch : drain(b, 0)) {
    ASSERT_EQ(batch.negatives.dim(), 3);
    ASSERT_EQ(batch.negatives.size(2), 7);
    auto users = to_vec(batch.user_ids);
    for (int64_t r = 0; r < batch.item_ids.size(0); ++r) {
      Span<int32_t> items = store.items(users[r]);
      std::set<int64_t> train(items.begin(), items.begin() + train_length(items.size()));
      auto tgt = to_vec(batch.targets[r]);
      for (int64_t t = 0; t < batch.item_ids.size(1); ++t) {
        auto negs = to_vec(batch.negatives[r][t]);
        for (int64_t n : negs) {
          if (tgt[t] == 0) {
            EXPECT_EQ(n, 0);  // padding positions get no negatives
            continue;
          }
          EXPECT_GE(n, 1);
          EXPECT_LE(n, 30);
          EXPECT_EQ(train.count(n), 0u) << "user " << users[r] << " negative " << n;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 20 * 7 * 7);  // 20 users x 7 positions (8 training items) x 7 negatives

  // Without exclusion, training items do show up (the check above can fail).
  o.exclude_history = false;
  TrainBatcher plain(store, o);
  int64_t hits = 0;
  for (const auto& batch : drain(plain, 0)) {
    auto users = to_vec(batch.user_ids);
    for (int64_t r = 0; r < batch.item_ids.size(0); ++r) {
      Span<int32_t> items = store.items(users[r]);
      std::set<int64_t> train(items.begin(), items.begin() + train_length(items.size()));
      for (int64_t n : to_vec(batch.negatives[r])) hits += n != 0 && train.count(n);
    }
  }
  EXPECT_GT(hits, 0);
}

TEST(TrainBatcher, ColdItemsNeverAppearInSamplesOrNegatives) {
  auto store = varied_store();
  TrainBatcherOptions o;
  o.max_seq_len = 6;
  o.batch_size = 4;
  o.num_negatives = 5;
  o.excluded_items = cold_items(store.num_items(), 0.3, 9);
  TrainBatcher b(store, o);
  int64_t targets = 0;
  for (const auto& batch : drain(b, 0)) {
    auto users = to_vec(batch.user_ids);
    for (int64_t r = 0; r < batch.item_ids.size(0); ++r) {
      // Inputs and targets are the user's training items with the cold ones removed, in order.
      Span<int32_t> items = store.items(users[r]);
      std::vector<int64_t> warm;
      for (int64_t i = 0; i < train_length(items.size()); ++i)
        if (!o.excluded_items[items[i]]) warm.push_back(items[i]);
      if (static_cast<int64_t>(warm.size()) > o.max_seq_len + 1) warm.erase(warm.begin(), warm.end() - (o.max_seq_len + 1));
      std::vector<int64_t> in, out;
      for (int64_t v : to_vec(batch.item_ids[r])) if (v) in.push_back(v);
      for (int64_t v : to_vec(batch.targets[r])) if (v) out.push_back(v);
      if (warm.size() < 2) {
        EXPECT_TRUE(in.empty());
        continue;
      }
      EXPECT_EQ(in, std::vector<int64_t>(warm.begin(), warm.end() - 1)) << "user " << users[r];
      EXPECT_EQ(out, std::vector<int64_t>(warm.begin() + 1, warm.end())) << "user " << users[r];
      targets += static_cast<int64_t>(out.size());
    }
    for (int64_t n : to_vec(batch.negatives.reshape({-1}))) EXPECT_FALSE(n && o.excluded_items[n]) << n;
  }
  EXPECT_GT(targets, 0);
}

TEST(TrainBatcher, ShardsAreDisjointCoveringAndEqualInSteps) {
  // Users with >= 2 training events give one sample each; sizes chosen to hit every case: whole
  // rounds, a leftover split over ranks, and fewer leftover samples than ranks (padding).
  for (int64_t num_users : {53, 41, 17, 9}) {
    for (int64_t world : {2, 3}) {
      for (bool bucketing : {true, false}) {
        auto store = varied_store(num_users);
        TrainBatcherOptions o;
        o.max_seq_len = 6;
        o.batch_size = 4;
        o.world_size = world;
        o.length_bucketing = bucketing;
        std::vector<std::vector<int64_t>> orders(world);
        std::vector<int64_t> steps(world);
        int64_t n = 0;
        for (int64_t r = 0; r < world; ++r) {
          o.rank = r;
          TrainBatcher batcher(store, o);
          n = batcher.num_samples();
          orders[r] = user_order(batcher, 1);
          steps[r] = static_cast<int64_t>(drain(batcher, 1).size());
          EXPECT_EQ(steps[r], batcher.batches_per_epoch());
        }
        SCOPED_TRACE("users " + std::to_string(num_users) + " world " + std::to_string(world) +
                     " samples " + std::to_string(n) + (bucketing ? " bucketed" : ""));
        for (int64_t r = 1; r < world; ++r) EXPECT_EQ(steps[r], steps[0]) << "rank " << r;
        EXPECT_EQ(steps[0], (n + world * 4 - 1) / (world * 4));
        // Covering: every sample exactly once, except that when fewer than W samples are left over
        // after whole rounds the last batches are padded with repeats.
        const int64_t left = n % (world * 4);
        const int64_t repeats = left > 0 && left < world ? world - left : 0;
        std::multiset<int64_t> all;
        for (const auto& order : orders) all.insert(order.begin(), order.end());
        EXPECT_EQ(static_cast<int64_t>(all.size()), n + repeats);
        std::set<int64_t> distinct(all.begin(), all.end());
        EXPECT_EQ(static_cast<int64_t>(distinct.size()), n);  // one sample per user here
      }
    }
  }
}

TEST(MakeEvalBatch, TruncatesToLastLItemsAndLeftPads) {
  auto store = make_store({{1, 2, 3, 4, 5, 6}, {7, 8, 9}}, 10, /*timestamps=*/true);
  auto q = eval_queries(store, Split::kTest);  // histories 1..5 and 7 8
  auto b = make_eval_batch(q, 0, 2, 3);
  ASSERT_EQ(b.item_ids.sizes(), (torch::IntArrayRef{2, 3}));
  EXPECT_EQ(b.position_offset, 0);
  EXPECT_EQ(to_vec(b.item_ids[0]), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(to_vec(b.item_ids[1]), (std::vector<int64_t>{0, 7, 8}));
  EXPECT_EQ(to_vec(b.targets), (std::vector<int64_t>{6, 9}));
  EXPECT_EQ(to_vec(b.user_ids), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(to_vec(b.timestamps[0]), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(to_vec(b.timestamps[1]), (std::vector<int64_t>{0, 100, 101}));
  EXPECT_EQ(to_vec(b.target_timestamps), (std::vector<int64_t>{5, 102}));

  // Narrow batch: width = longest history, offset keeps the newest item at L-1.
  auto narrow = make_eval_batch(q, 1, 2, 10);
  ASSERT_EQ(narrow.item_ids.sizes(), (torch::IntArrayRef{1, 2}));
  EXPECT_EQ(narrow.position_offset, 8);
  EXPECT_EQ(to_vec(narrow.item_ids[0]), (std::vector<int64_t>{7, 8}));
  EXPECT_EQ(to_vec(narrow.user_ids), (std::vector<int64_t>{1}));
}

}  // namespace
}  // namespace seqrec::data

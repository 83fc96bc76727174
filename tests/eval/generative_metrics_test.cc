// Generative-protocol metrics against hand computation (LC-Rec evaluate.py's definitions).
#include "seqrec/eval/generative_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "support.h"

namespace seqrec::eval {
namespace {

TEST(GenerativeMetricsTest, RankCountsNonItemSlots) {
  EXPECT_EQ(generative_rank({-1, -1, 7, 3}, 7), 2);  // two non-items ahead still take ranks 0 and 1
  EXPECT_EQ(generative_rank({4, 7, 7}, 7), 1);
  EXPECT_EQ(generative_rank({4, 5}, 7), -1);
  EXPECT_EQ(generative_rank({-1, 4}, -1), -1);       // a non-item never matches
  EXPECT_EQ(generative_rank({}, 7), -1);
}

TEST(GenerativeMetricsTest, HandComputedAverages) {
  GenerativeMetrics m;
  m.add({3, 8, 9, 1, 2, 4, 5, 6, 10, 11}, 3);         // rank 0: every hit, ndcg 1
  m.add({5, -1, 7, 8, 9, 10, 11, 12, 13, 14}, 7);     // rank 2: hr@5/@10, ndcg 1/log2(4) = 0.5
  m.add({1, 2, 3, 4, 5, 6, 9, 8, -1, -1}, 9);         // rank 6: hr@10 only, ndcg@10 = 1/log2(8) = 1/3
  m.add({1, 2, -1, 4, 5, 6, 7, 8, 10, 11}, 9);        // miss
  EXPECT_EQ(m.count(), 4);
  MetricSet r = m.result();
  ASSERT_EQ(r.size(), 8u);
  EXPECT_DOUBLE_EQ(r.at("hr@1"), 0.25);
  EXPECT_DOUBLE_EQ(r.at("ndcg@1"), 0.25);
  EXPECT_DOUBLE_EQ(r.at("hr@5"), 0.5);
  EXPECT_DOUBLE_EQ(r.at("hr@10"), 0.75);
  EXPECT_DOUBLE_EQ(r.at("ndcg@5"), (1.0 + 0.5) / 4);
  EXPECT_DOUBLE_EQ(r.at("ndcg@10"), (1.0 + 0.5 + 1.0 / 3) / 4);
  EXPECT_NEAR(r.at("mrr"), (1.0 + 1.0 / 3 + 1.0 / 7 + 0.0) / 4, 1e-12);  // a miss adds ~1e-19
  EXPECT_DOUBLE_EQ(r.at("non_item_share"), 4.0 / 40);
}

TEST(GenerativeMetricsTest, FewerBeamsThanCutOffs) {
  GenerativeMetrics m({1, 5});
  m.add({2, 9}, 9);  // two beams only (a catalogue smaller than num_beams)
  EXPECT_DOUBLE_EQ(m.result().at("hr@1"), 0.0);
  EXPECT_DOUBLE_EQ(m.result().at("hr@5"), 1.0);
  EXPECT_DOUBLE_EQ(m.result().at("ndcg@5"), 1.0 / std::log2(3.0));
}

TEST(GenerativeMetricsTest, MergeAndSumsRoundTrip) {
  GenerativeMetrics a, b, both;
  a.add({1, -1, 3}, 3);
  b.add({-1, -1, 2}, 5);
  both.add({1, -1, 3}, 3);
  both.add({-1, -1, 2}, 5);
  a.merge(b);
  EXPECT_EQ(a.result(), both.result());
  GenerativeMetrics c;
  c.set_sums(a.sums());
  EXPECT_EQ(c.result(), both.result());
  EXPECT_EQ(c.count(), 2);
  EXPECT_DOUBLE_EQ(c.result().at("non_item_share"), 3.0 / 6);
  ASSERT_THROWS_WITH(c.set_sums({1.0}), "expected 10 values, got 1");
  GenerativeMetrics other({1});
  ASSERT_THROWS_WITH(a.merge(other), "different cut-offs");
}

TEST(GenerativeMetricsTest, RejectsBadCutOffsAndAveragesNothingToZero) {
  ASSERT_THROWS_WITH(GenerativeMetrics({0, 5}), "cut-off k=0 must be >= 1");
  GenerativeMetrics empty;
  EXPECT_DOUBLE_EQ(empty.result().at("hr@10"), 0.0);
  EXPECT_DOUBLE_EQ(empty.result().at("non_item_share"), 0.0);
}

}  // namespace
}  // namespace seqrec::eval

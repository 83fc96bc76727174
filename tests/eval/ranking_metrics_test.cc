// Multi-positive recall / ndcg / mrr at k against hand-computed values.
#include "seqrec/eval/ranking_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace seqrec::eval {
namespace {

TEST(RankingMetricsTest, PositiveRanksCountNegativesPessimisticallyAndOrderTiedPositives) {
  EXPECT_EQ(positive_ranks({0.9f, 0.8f, 0.7f, 0.6f, 0.5f}, {1, 3}), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(positive_ranks({0.5f, 0.5f, 0.5f}, {0}), (std::vector<int64_t>{2}));         // ties with negatives lose
  EXPECT_EQ(positive_ranks({0.5f, 0.5f, 0.1f}, {1, 0}), (std::vector<int64_t>{0, 1}));   // tied positives: list order
}

TEST(RankingMetricsTest, TwoPositivesMatchHandValues) {
  RankingAccumulator acc({1, 2, 5});
  acc.add({0.9f, 0.8f, 0.7f, 0.6f, 0.5f}, {1, 3});  // ranks 1 and 3
  const MetricSet m = acc.result();
  const double l3 = 1.0 / std::log2(3.0), l5 = 1.0 / std::log2(5.0);
  EXPECT_DOUBLE_EQ(m.at("recall@1"), 0.0);
  EXPECT_DOUBLE_EQ(m.at("ndcg@1"), 0.0);
  EXPECT_DOUBLE_EQ(m.at("mrr@1"), 0.0);
  EXPECT_DOUBLE_EQ(m.at("recall@2"), 0.5);
  EXPECT_NEAR(m.at("ndcg@2"), l3 / (1.0 + l3), 1e-12);
  EXPECT_DOUBLE_EQ(m.at("mrr@2"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("recall@5"), 1.0);
  EXPECT_NEAR(m.at("ndcg@5"), (l3 + l5) / (1.0 + l3), 1e-12);  // 0.650921
  EXPECT_NEAR(m.at("ndcg@5"), 0.650921, 1e-6);
  EXPECT_DOUBLE_EQ(m.at("mrr@5"), 0.5);
}

TEST(RankingMetricsTest, MorePositivesThanKUseIdealDcgOfKSlots) {
  RankingAccumulator acc({2});
  acc.add_ranks({0, 1, 2});  // three positives at the top: perfect at k = 2
  acc.add_ranks({4});        // one positive outside the cut-off
  const MetricSet m = acc.result();
  EXPECT_NEAR(m.at("ndcg@2"), (1.0 + 0.0) / 2, 1e-12);
  EXPECT_NEAR(m.at("recall@2"), (2.0 / 3 + 0.0) / 2, 1e-12);
  EXPECT_NEAR(m.at("mrr@2"), (1.0 + 0.0) / 2, 1e-12);
  EXPECT_EQ(acc.count(), 2);
}

TEST(RankingMetricsTest, OnePositiveAgreesWithSingleTargetMetrics) {
  RankingAccumulator multi({1, 5, 10});
  MetricAccumulator single({1, 5, 10});
  for (int64_t rank : {0, 3, 7, 12}) {
    multi.add_ranks({rank});
    single.add(rank);
  }
  const MetricSet a = multi.result(), b = single.result();
  for (const char* k : {"1", "5", "10"}) {
    EXPECT_NEAR(a.at(std::string("recall@") + k), b.at(std::string("hr@") + k), 1e-12);
    EXPECT_NEAR(a.at(std::string("ndcg@") + k), b.at(std::string("ndcg@") + k), 1e-12);
  }
  EXPECT_NEAR(a.at("mrr@5"), (1.0 + 0.25) / 4, 1e-12);
  EXPECT_NEAR(a.at("mrr@10"), (1.0 + 0.25 + 0.125) / 4, 1e-12);
}

TEST(RankingMetricsTest, QueryWithoutPositiveIsRejected) {
  RankingAccumulator acc({1});
  EXPECT_THROW(acc.add_ranks({}), std::invalid_argument);
}

}  // namespace
}  // namespace seqrec::eval

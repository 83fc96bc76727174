#include "seqrec/eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "support.h"

namespace seqrec::eval {
namespace {

TEST(MetricRankTest, CountsOthersWithGreaterOrEqualScore) {
  // Target 0 (0.5) ties with index 2 and is beaten by index 1: pessimistic rank 2.
  std::vector<float> scores = {0.5f, 0.9f, 0.5f, 0.1f};
  EXPECT_EQ(rank_of(scores, 0), 2);
  EXPECT_EQ(rank_of(scores, 2), 2);
  EXPECT_EQ(rank_of(scores, 1), 0);
  EXPECT_EQ(rank_of(scores, 3), 3);
}

TEST(MetricRankTest, ConstantScoresRankLast) {
  std::vector<float> scores(5, 1.0f);
  for (int64_t t = 0; t < 5; ++t) EXPECT_EQ(rank_of(scores, t), 4);
  EXPECT_EQ(rank_of({3.0f}, 0), 0);  // a single candidate is always rank 0
}

TEST(MetricRankTest, NanIsPessimistic) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(rank_of({nan, 0.1f, 0.2f}, 0), 2);
  EXPECT_EQ(rank_of({0.9f, nan, 0.2f}, 0), 1);
}

TEST(MetricRankTest, TargetOutOfRangeThrows) {
  EXPECT_THROW(rank_of({1.0f, 2.0f}, 2), std::out_of_range);
  EXPECT_THROW(rank_of({1.0f, 2.0f}, -1), std::out_of_range);
}

TEST(MetricAccumulatorTest, HandComputedAverages) {
  MetricAccumulator acc({1, 3});
  acc.add(0);  // hit everywhere: hr=1, ndcg=1, rr=1
  acc.add(2);  // only @3: ndcg@3 = 1/log2(4) = 0.5, rr = 1/3
  acc.add(5);  // miss for both cut-offs, rr = 1/6
  EXPECT_EQ(acc.count(), 3);
  MetricSet m = acc.result();
  ASSERT_EQ(m.size(), 5u);
  EXPECT_DOUBLE_EQ(m.at("hr@1"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(m.at("hr@3"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.at("ndcg@1"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(m.at("ndcg@3"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("mrr"), 0.5);  // (1 + 1/3 + 1/6) / 3
}

TEST(MetricAccumulatorTest, NdcgOfRankOne) {
  MetricAccumulator acc({2});
  acc.add(1);
  EXPECT_DOUBLE_EQ(acc.result().at("ndcg@2"), 1.0 / std::log2(3.0));
  EXPECT_DOUBLE_EQ(acc.result().at("hr@2"), 1.0);
  EXPECT_DOUBLE_EQ(acc.result().at("mrr"), 0.5);
}

TEST(MetricAccumulatorTest, TiesFromScoresArePessimistic) {
  MetricAccumulator acc({1, 2});
  // Target ties with one other candidate: rank 1, so no hit at 1, a hit at 2.
  acc.add(rank_of({0.7f, 0.7f, 0.1f}, 0));
  MetricSet m = acc.result();
  EXPECT_DOUBLE_EQ(m.at("hr@1"), 0.0);
  EXPECT_DOUBLE_EQ(m.at("hr@2"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("ndcg@2"), 1.0 / std::log2(3.0));
  EXPECT_DOUBLE_EQ(m.at("mrr"), 0.5);
}

TEST(MetricAccumulatorTest, KLargerThanCandidatesAlwaysHits) {
  MetricAccumulator acc({10});
  // Three candidates, all scored equally: the worst possible rank is 2 < 10.
  acc.add(rank_of({1.0f, 1.0f, 1.0f}, 1));
  MetricSet m = acc.result();
  EXPECT_DOUBLE_EQ(m.at("hr@10"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("ndcg@10"), 0.5);  // 1/log2(2+2)
  EXPECT_DOUBLE_EQ(m.at("mrr"), 1.0 / 3);
}

TEST(MetricAccumulatorTest, HugeMissRankContributesNothing) {
  MetricAccumulator acc({5, 10});
  acc.add(std::numeric_limits<int64_t>::max());
  MetricSet m = acc.result();
  EXPECT_EQ(m.at("hr@5"), 0.0);
  EXPECT_EQ(m.at("ndcg@10"), 0.0);
  EXPECT_NEAR(m.at("mrr"), 0.0, 1e-15);
  EXPECT_THROW(acc.add(-1), std::invalid_argument);
}

TEST(MetricAccumulatorTest, EmptyIsZero) {
  MetricAccumulator acc({10});
  MetricSet m = acc.result();
  EXPECT_EQ(m.at("hr@10"), 0.0);
  EXPECT_EQ(m.at("ndcg@10"), 0.0);
  EXPECT_EQ(m.at("mrr"), 0.0);
  EXPECT_THROW(MetricAccumulator({0}), std::invalid_argument);
}

TEST(MetricAccumulatorTest, MergeEqualsSingleAccumulator) {
  MetricAccumulator a({1, 3}), b({1, 3}), all({1, 3});
  for (int64_t r : {0, 2}) {
    a.add(r);
    all.add(r);
  }
  for (int64_t r : {5, 1, 0}) {
    b.add(r);
    all.add(r);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), 5);
  MetricSet merged = a.result(), expected = all.result();
  for (const auto& [k, v] : expected) EXPECT_DOUBLE_EQ(merged.at(k), v) << k;
  // hr@3: ranks 0, 2, 1, 0 hit out of 5.
  EXPECT_DOUBLE_EQ(merged.at("hr@3"), 4.0 / 5);
  EXPECT_THROW(a.merge(MetricAccumulator({1, 5})), std::invalid_argument);
}

TEST(MetricAccumulatorTest, SumsRoundTrip) {
  MetricAccumulator acc({1, 3});
  acc.add(0);
  acc.add(2);
  acc.add(5);
  std::vector<double> s = acc.sums();
  // Order: hr@1, hr@3, ndcg@1, ndcg@3, mrr, count.
  ASSERT_EQ(s.size(), 6u);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 2.0);
  EXPECT_DOUBLE_EQ(s[2], 1.0);
  EXPECT_DOUBLE_EQ(s[3], 1.5);
  EXPECT_DOUBLE_EQ(s[4], 1.5);
  EXPECT_DOUBLE_EQ(s[5], 3.0);

  MetricAccumulator copy({1, 3});
  copy.set_sums(s);
  EXPECT_EQ(copy.count(), 3);
  EXPECT_EQ(copy.result(), acc.result());
  EXPECT_THROW(copy.set_sums({1.0, 2.0}), std::invalid_argument);
}

/// Six significant digits, not six decimals: small values keep their precision, and the printed
/// number is the shortest that round-trips (0.046032, not 0.046031999999999997).
TEST(MetricJsonTest, SixSignificantDigits) {
  MetricSet m = {{"a", 0.0123456789}, {"b", 0.046032}, {"c", 4.53261234}, {"d", 1.23456789e-7}, {"e", 0.0},
                 {"f", -0.98765432}, {"g", 1.0}, {"h", std::nan("")}};
  const std::string line = to_json_line(m, "test", "full", 1);
  EXPECT_EQ(line, "{\"split\":\"test\",\"protocol\":\"full\",\"users\":1,\"a\":0.0123457,\"b\":0.046032,"
                  "\"c\":4.53261,\"d\":1.23457e-07,\"e\":0.0,\"f\":-0.987654,\"g\":1.0,\"h\":null}");
  auto j = nlohmann::json::parse(line);
  EXPECT_TRUE(j["g"].is_number_float());
  EXPECT_DOUBLE_EQ(j["b"].get<double>(), 0.046032);
}

// The metrics in the order people read them: by family (hr, ndcg, mrr), cut-offs numerically
// (hr@5 before hr@10, which a plain string sort would swap); the fields naming the numbers first.
TEST(MetricJsonTest, MetricsInFamilyAndNumericCutoffOrder) {
  MetricSet m = {{"ndcg@10", 0.25}, {"mrr", 1.0 / 3}, {"hr@10", 0.5}, {"hr@5", 0.375}, {"ndcg@5", 0.125}, {"hr@1", 0.0}};
  std::string line = to_json_line(m, "test", "full", 3);
  EXPECT_EQ(line,
            "{\"split\":\"test\",\"protocol\":\"full\",\"users\":3,\"hr@1\":0.0,\"hr@5\":0.375,\"hr@10\":0.5,"
            "\"ndcg@5\":0.125,\"ndcg@10\":0.25,\"mrr\":0.333333}");
  auto j = nlohmann::json::parse(line);
  EXPECT_TRUE(j["mrr"].is_number());
  EXPECT_TRUE(j["users"].is_number_integer());
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace seqrec::eval

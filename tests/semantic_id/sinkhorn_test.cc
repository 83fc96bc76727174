// Sinkhorn-Knopp: centring, one iteration against a hand computation, marginals, and the uniform
// spread of a batch that argmin would put on one code.
#include "seqrec/semantic_id/sinkhorn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace seqrec::semantic_id {
namespace {

TEST(SinkhornTest, CenterDistancesMapMinAndMaxToMinusOneAndOne) {
  auto d = torch::tensor({{2.0, 6.0}, {4.0, 3.0}}, torch::kFloat);
  auto c = center_distances(d);
  // mid = 4, amp = 2 + 1e-5
  const double amp = 2.0 + 1e-5;
  EXPECT_NEAR(c[0][0].item<double>(), -2.0 / amp, 1e-6);
  EXPECT_NEAR(c[0][1].item<double>(), 2.0 / amp, 1e-6);
  EXPECT_NEAR(c[1][0].item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(c[1][1].item<double>(), -1.0 / amp, 1e-6);
}

TEST(SinkhornTest, OneIterationMatchesHandComputation) {
  const double d[2][3] = {{0.0, 0.5, 1.0}, {-1.0, 0.2, 0.3}};
  const double eps = 0.5;
  // By hand: Q = exp(-d/eps) / sum; rows to 1/B; columns to 1/C; times B.
  double q[2][3], total = 0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) total += q[i][j] = std::exp(-d[i][j] / eps);
  for (auto& row : q)
    for (double& v : row) v /= total;
  for (auto& row : q) {
    const double s = row[0] + row[1] + row[2];
    for (double& v : row) v = v / s / 2;
  }
  for (int j = 0; j < 3; ++j) {
    const double s = q[0][j] + q[1][j];
    for (auto& row : q) row[j] = row[j] / s / 3;
  }
  auto got = sinkhorn(torch::tensor({{0.0, 0.5, 1.0}, {-1.0, 0.2, 0.3}}, torch::kDouble), eps, 1);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(got[i][j].item<double>(), 2 * q[i][j], 1e-12);
}

TEST(SinkhornTest, MarginalsAfterIterations) {
  torch::manual_seed(3);
  const int64_t b = 12, c = 4;
  auto q = sinkhorn(center_distances(torch::rand({b, c})), 0.1, 200);
  EXPECT_EQ(q.scalar_type(), torch::kDouble);
  // The last step normalises columns: each column sums to B / C exactly, rows to 1 at convergence.
  EXPECT_TRUE(torch::allclose(q.sum(0), torch::full({c}, double(b) / c, torch::kDouble), 1e-9, 1e-12));
  EXPECT_TRUE(torch::allclose(q.sum(1), torch::ones({b}, torch::kDouble), 1e-4, 1e-6));
}

TEST(SinkhornTest, SpreadsABatchThatArgminPutsOnOneCodeUniformly) {
  torch::manual_seed(4);
  const int64_t b = 256, c = 4;
  // Code 0 is everyone's nearest code; the others differ a little per item.
  auto d = torch::rand({b, c}) + 1.0;
  d.select(1, 0).fill_(0.5);
  ASSERT_EQ(d.argmin(1).eq(0).sum().item<int64_t>(), b);
  // LC-Rec's 50 iterations at epsilon 0.003: every code is used, code 0 no longer dominates.
  auto counts = torch::bincount(sinkhorn_codes(d, 0.003, 50), {}, c);
  for (int64_t k = 0; k < c; ++k) EXPECT_GE(counts[k].item<int64_t>(), b / 8) << "code " << k;
  EXPECT_LT(counts[0].item<int64_t>(), 3 * b / 4);
  // Run to convergence, the use is uniform.
  counts = torch::bincount(sinkhorn_codes(d, 0.003, 2000), {}, c);
  for (int64_t k = 0; k < c; ++k) {
    EXPECT_GE(counts[k].item<int64_t>(), b / c - 4) << "code " << k;
    EXPECT_LE(counts[k].item<int64_t>(), b / c + 4) << "code " << k;
  }
}

}  // namespace
}  // namespace seqrec::semantic_id

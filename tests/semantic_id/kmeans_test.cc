// k-means: known clusters recovered, determinism for a seed, the N >= K contract.
#include "seqrec/semantic_id/kmeans.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support.h"

namespace seqrec::semantic_id {
namespace {

// 3 blobs of 40 points (sd 0.1) around known centres, interleaved.
torch::Tensor blobs(const torch::Tensor& centres, int64_t per, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = centres.repeat({per, 1});                                                   // [per*K, D]
  return x + 0.1 * torch::randn(x.sizes());
}

TEST(KMeansTest, RecoversWellSeparatedClusters) {
  const auto truth = torch::tensor({{0.0, 0.0}, {10.0, 10.0}, {-10.0, 10.0}}, torch::kFloat);
  const auto x = blobs(truth, 40, 1);
  KMeansOptions o;
  o.num_clusters = 3;
  o.seed = 5;
  const KMeansResult r = kmeans(x, o);
  ASSERT_EQ(r.centers.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(r.centers.scalar_type(), torch::kFloat);
  // Each true centre has exactly one found centre within 0.1 of it.
  for (int64_t k = 0; k < 3; ++k) {
    auto dist = (r.centers - truth[k]).norm(2, 1);                                     // [K]
    EXPECT_LT(dist.min().item<double>(), 0.1) << "centre " << k;
  }
  // Points of the same blob share a label; different blobs differ.
  auto labels = r.labels.view({40, 3});
  for (int64_t k = 0; k < 3; ++k) EXPECT_TRUE((labels.select(1, k) == labels[0][k]).all().item<bool>());
  EXPECT_EQ(std::get<0>(at::_unique(labels[0])).numel(), 3);
  // Inertia: the sum of squared distances to the nearest centre (about N * D * 0.01).
  auto nearest = torch::cdist(x.to(torch::kDouble), r.centers.to(torch::kDouble)).pow(2).min(1);
  EXPECT_NEAR(r.inertia, std::get<0>(nearest).sum().item<double>(), 1e-6);
  EXPECT_NEAR(r.inertia, 120 * 2 * 0.01, 0.8);
}

TEST(KMeansTest, SameSeedSameCentresAndLabels) {
  const auto x = torch::randn({200, 4}, torch::TensorOptions().dtype(torch::kFloat));
  KMeansOptions o;
  o.num_clusters = 16;
  o.seed = 7;
  const KMeansResult a = kmeans(x, o), b = kmeans(x, o);
  EXPECT_TRUE(torch::equal(a.centers, b.centers));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  o.seed = 8;
  const KMeansResult c = kmeans(x, o);
  EXPECT_FALSE(torch::equal(a.centers, c.centers));  // unstructured data: the seeding decides
}

TEST(KMeansTest, AsManyClustersAsPointsPutsOneCentreOnEachPoint) {
  const auto x = torch::tensor({{0.0, 1.0}, {2.0, 0.0}, {5.0, 5.0}, {-3.0, 1.0}}, torch::kFloat);
  KMeansOptions o;
  o.num_clusters = 4;
  const KMeansResult r = kmeans(x, o);
  EXPECT_NEAR(r.inertia, 0.0, 1e-9);
  auto sorted_found = std::get<0>(r.centers.select(1, 0).sort());
  auto sorted_truth = std::get<0>(x.select(1, 0).sort());
  EXPECT_TRUE(torch::allclose(sorted_found, sorted_truth));
}

TEST(KMeansTest, MoreClustersThanPointsIsRefused) {
  KMeansOptions o;
  o.num_clusters = 5;
  ASSERT_THROWS_WITH(kmeans(torch::zeros({4, 2}), o), "N >= K");
}

}  // namespace
}  // namespace seqrec::semantic_id

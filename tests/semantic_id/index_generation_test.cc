// Index generation: argmin codes, then Sinkhorn rounds on colliding groups make near-identical items
// unique; identical items stay together (tolerated, as upstream).
#include "seqrec/semantic_id/index_generation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace seqrec::semantic_id {
namespace {

// Identity encoder; level 0: 2 codes far apart, level 1: 4 codes near the origin.
RqVae crafted_model(double last_epsilon) {
  RqVaeOptions o;
  o.input_dim = 2;
  o.hidden_dims = {};
  o.code_dim = 2;
  o.num_levels = 2;
  o.num_codes = 4;
  o.kmeans_init = false;
  o.sk_epsilons = {0.0, last_epsilon};
  RqVae m(o);
  torch::NoGradGuard no_grad;
  auto& enc = *m->encoder->mlp_layers->ptr<torch::nn::LinearImpl>(1);
  enc.weight.copy_(torch::eye(2));
  enc.bias.zero_();
  m->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight.copy_(
      torch::tensor({{10.0, 0.0}, {-10.0, 0.0}, {50.0, 50.0}, {60.0, 60.0}}));
  m->rq->vq_layers->ptr<VectorQuantizerImpl>(1)->embedding->weight.copy_(
      torch::tensor({{0.0, 0.0}, {1.0, 0.0}, {0.0, 1.0}, {-1.0, 0.0}}));
  return m;
}

TEST(IndexGenerationTest, CollisionRoundsSpreadNearIdenticalItems) {
  RqVae m = crafted_model(0.0);
  // Items 0-2 all land on (0, 0) by argmin (residuals near the origin); 3 on (1, 1); 4 on (0, 2).
  auto x = torch::tensor({{10.05, 0.02}, {9.98, -0.03}, {10.01, 0.04}, {-10.0, 0.1}, {10.1, 0.9}});
  IndexGenerationOptions o;
  const IndexGenerationReport r = generate_index(*m, x, o);
  EXPECT_EQ(r.before.num_items, 5);
  EXPECT_EQ(r.before.num_distinct, 3);
  EXPECT_DOUBLE_EQ(r.before.rate(), 2.0 / 5.0);
  EXPECT_EQ(r.after.num_distinct, 5);
  EXPECT_DOUBLE_EQ(r.after.rate(), 0.0);
  EXPECT_GE(r.rounds, 1);
  // Level 0 keeps its argmin codes (its epsilon is 0 in the rounds); item 3 never collided.
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(r.index.codes[i * 2], 0);
  EXPECT_EQ(r.index.codes[8], 0);
  EXPECT_EQ(r.index.codes[6], 1);
  EXPECT_EQ(r.index.codes[7], 0);
  EXPECT_EQ(r.used_codes[0], 2);
}

TEST(IndexGenerationTest, IdenticalItemsStayCollidedAfterAllRounds) {
  RqVae m = crafted_model(0.003);
  auto x = torch::tensor({{10.0, 0.0}, {10.0, 0.0}, {-10.0, 1.0}});
  IndexGenerationOptions o;
  o.max_rounds = 3;
  const IndexGenerationReport r = generate_index(*m, x, o);
  EXPECT_EQ(r.rounds, 3);
  EXPECT_EQ(r.after.num_groups, 1);
  EXPECT_EQ(r.after.max_group, 2);
  EXPECT_EQ(r.index.codes[0], r.index.codes[2]);
  EXPECT_EQ(r.index.codes[1], r.index.codes[3]);
}

TEST(IndexGenerationTest, NoCollisionsMeansNoRounds) {
  RqVae m = crafted_model(0.0);
  auto x = torch::tensor({{10.0, 0.0}, {11.0, 0.0}, {-10.0, 1.0}});
  const IndexGenerationReport r = generate_index(*m, x, IndexGenerationOptions{});
  EXPECT_EQ(r.rounds, 0);
  EXPECT_EQ(r.index.codes, (std::vector<int64_t>{0, 0, 0, 1, 1, 2}));
}

}  // namespace
}  // namespace seqrec::semantic_id

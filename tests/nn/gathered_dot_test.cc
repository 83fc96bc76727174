// gathered_dot equals gathering the rows and multiplying, values and gradients (repeated ids too).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/nn/gathered_dot.h"

namespace seqrec::nn {
namespace {

TEST(GatheredDotTest, EqualsGatherThenMatmulWithRepeatedIds) {
  torch::manual_seed(4);
  auto h = torch::randn({300, 13}).requires_grad_(true);
  auto table = torch::randn({9, 13}).requires_grad_(true);
  auto ids = torch::randint(0, 9, {300, 7}, torch::kLong);  // rows repeat within and across positions
  ids[0][1] = ids[0][0].item<int64_t>();
  auto got = gathered_dot(h, table, ids);
  auto want = torch::matmul(table.index_select(0, ids.reshape({-1})).view({300, 7, 13}), h.unsqueeze(-1)).squeeze(-1);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5));
  auto probe = torch::randn({300, 7});
  auto g_got = torch::autograd::grad({(got * probe).sum()}, {h, table});
  auto g_want = torch::autograd::grad({(want * probe).sum()}, {h, table});
  EXPECT_TRUE(torch::allclose(g_got[0], g_want[0], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(g_got[1], g_want[1], 1e-4, 1e-5));
}

TEST(GatheredDotTest, HandComputedAndShapeErrors) {
  auto h = torch::tensor({1.f, 2.f}).view({1, 2});
  auto table = torch::tensor({0.f, 0.f, 3.f, 4.f, -1.f, 1.f}).view({3, 2});
  auto out = gathered_dot(h, table, torch::tensor({1, 2, 1}, torch::kLong).view({1, 3}));
  EXPECT_FLOAT_EQ(out[0][0].item<float>(), 11.f);
  EXPECT_FLOAT_EQ(out[0][1].item<float>(), 1.f);
  EXPECT_FLOAT_EQ(out[0][2].item<float>(), 11.f);
  EXPECT_THROW(gathered_dot(h, torch::zeros({3, 5}), torch::zeros({1, 3}, torch::kLong)), c10::Error);
}

}  // namespace
}  // namespace seqrec::nn

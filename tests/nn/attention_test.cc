// Jagged causal attention equals the padded computation, values and gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/nn/attention.h"

namespace seqrec::nn {
namespace {

struct Inputs {
  torch::Tensor q, k, v, lengths, weights;
};

Inputs make_inputs() {
  torch::manual_seed(3);
  Inputs in;
  in.q = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.k = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.v = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.lengths = torch::tensor({6, 3, 0}, torch::kInt64);
  in.weights = torch::randn({3, 2, 6, 4});
  return in;
}

TEST(JaggedAttentionTest, MatchesPaddedValuesAndGradients) {
  Inputs in = make_inputs();
  auto jagged = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  auto padded = padded_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  EXPECT_TRUE(torch::allclose(jagged, padded, 1e-5, 1e-6));
  auto gj = torch::autograd::grad({(jagged * in.weights).sum()}, {in.q, in.k, in.v});
  auto gp = torch::autograd::grad({(padded * in.weights).sum()}, {in.q, in.k, in.v});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(gj[i], gp[i], 1e-5, 1e-6)) << "input " << i;
}

TEST(JaggedAttentionTest, HandComputedSingleHead) {
  // One sequence of length 2 in a width-3 row: position 1 attends to itself only, position 2
  // attends to positions 1 and 2 with softmax weights of q2.k1 = 0 and q2.k2 = ln 3 -> 1/4, 3/4.
  auto q = torch::tensor({0.f, 0.f, 1.f, std::log(3.f)}).view({1, 1, 2, 2});
  q = torch::cat({torch::zeros({1, 1, 1, 2}), q}, 2);                                  // [1, 1, 3, 2]
  auto k = torch::tensor({9.f, 9.f, 0.f, 0.f, 0.f, 1.f}).view({1, 1, 3, 2});
  auto v = torch::tensor({100.f, 100.f, 4.f, 8.f, 8.f, 0.f}).view({1, 1, 3, 2});
  auto out = jagged_causal_attention(q, k, v, torch::tensor({2}, torch::kInt64), 0.0, false);
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 0.f);                                  // padding row
  EXPECT_FLOAT_EQ(out[0][0][1][0].item<float>(), 4.f);
  EXPECT_FLOAT_EQ(out[0][0][1][1].item<float>(), 8.f);
  EXPECT_NEAR(out[0][0][2][0].item<float>(), 0.25f * 4 + 0.75f * 8, 1e-5);
  EXPECT_NEAR(out[0][0][2][1].item<float>(), 0.25f * 8 + 0.75f * 0, 1e-5);
}

TEST(JaggedAttentionTest, FutureKeysDoNotChangeEarlierOutputs) {
  Inputs in = make_inputs();
  auto before = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, false);
  auto k2 = in.k.detach().clone(), v2 = in.v.detach().clone();
  k2.select(2, 5).fill_(7.f);
  v2.select(2, 5).fill_(-7.f);
  auto after = jagged_causal_attention(in.q, k2, v2, in.lengths, 0.0, false);
  EXPECT_TRUE(torch::allclose(before.narrow(2, 0, 5), after.narrow(2, 0, 5)));
  EXPECT_FALSE(torch::allclose(before.narrow(2, 5, 1), after.narrow(2, 5, 1)));
}

TEST(JaggedAttentionTest, DropoutOnlyWhenTrainingAndReproducible) {
  Inputs in = make_inputs();
  auto plain = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  EXPECT_TRUE(torch::equal(plain, jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, false)));
  torch::manual_seed(11);
  auto a = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, true);
  torch::manual_seed(11);
  auto b = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, true);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::allclose(a, plain));
}

}  // namespace
}  // namespace seqrec::nn

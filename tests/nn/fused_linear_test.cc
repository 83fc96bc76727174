// fused_linear equals the op-by-op computation, values and gradients, with and without dropout.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/nn/fused_linear.h"

namespace seqrec::nn {
namespace {

using cpu::Activation;

struct Case {
  torch::Tensor x, weight, bias, residual, keep, probe;
};

// Rows = 3 x 130 (several 256-row chunks on two threads would need more; 390 crosses one).
Case make_case(int64_t in, int64_t out) {
  torch::manual_seed(5);
  Case c;
  c.x = torch::randn({3, 130, in}).requires_grad_(true);
  c.weight = (torch::randn({out, in}) * 0.3).requires_grad_(true);
  c.bias = torch::randn({out}).requires_grad_(true);
  c.residual = torch::randn({3, 130, out}).requires_grad_(true);
  c.keep = torch::rand({3, 130, 1}).gt(0.2).to(torch::kFloat);
  c.probe = torch::randn({3, 130, out});
  return c;
}

torch::Tensor reference(const Case& c, Activation act, double scale, bool with_bias, bool with_res, bool with_keep,
                        const torch::Tensor& mask = {}) {
  auto z = torch::linear(c.x, c.weight, with_bias ? c.bias : torch::Tensor());
  if (act == Activation::kRelu) z = torch::relu(z);
  if (act == Activation::kSilu) z = torch::silu(z);
  if (act == Activation::kGelu) z = torch::gelu(z);
  z = z * scale;
  if (mask.defined()) z = z * mask;
  if (with_res) z = z + c.residual;
  if (with_keep) z = z * c.keep;
  return z;
}

TEST(FusedLinearTest, EqualsOpByOpForEveryActivationAndTail) {
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kSilu, Activation::kGelu})
    for (int tail = 0; tail < 8; ++tail) {
      const bool with_bias = tail & 1, with_res = tail & 2, with_keep = tail & 4;
      SCOPED_TRACE("activation " + std::to_string(int(act)) + " tail " + std::to_string(tail));
      Case c = make_case(11, 6);
      FusedLinearOptions o;
      o.activation = act;
      o.scale = 0.7;
      auto got = fused_linear(c.x, c.weight, with_bias ? c.bias : torch::Tensor(), o,
                              with_res ? c.residual : torch::Tensor(), with_keep ? c.keep : torch::Tensor());
      auto want = reference(c, act, 0.7, with_bias, with_res, with_keep);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5));
      std::vector<torch::Tensor> inputs = {c.x, c.weight};
      if (with_bias) inputs.push_back(c.bias);
      if (with_res) inputs.push_back(c.residual);
      auto g_got = torch::autograd::grad({(got * c.probe).sum()}, inputs);
      auto g_want = torch::autograd::grad({(want * c.probe).sum()}, inputs);
      for (size_t i = 0; i < inputs.size(); ++i)
        EXPECT_TRUE(torch::allclose(g_got[i], g_want[i], 1e-4, 1e-4)) << "gradient " << i;
    }
}

TEST(FusedLinearTest, DropoutIsReproducibleKeepsTheRateAndBackpropagatesThroughItsMask) {
  Case c = make_case(9, 40);
  FusedLinearOptions o;
  o.activation = Activation::kRelu;
  o.dropout = 0.3;
  o.training = true;
  // The mask depends on the seed and the row only, so x = 0, W = 0, b = 1 reveals it: y = mask.
  FusedLinearOptions probe = o;
  probe.activation = Activation::kNone;
  torch::manual_seed(17);
  auto mask = fused_linear(torch::zeros_like(c.x), torch::zeros_like(c.weight), torch::ones({40}), probe).detach();
  const double dropped = mask.eq(0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(dropped, 0.3, 0.03);
  EXPECT_TRUE(mask.eq(0).logical_or(mask.sub(1 / 0.7).abs().lt(1e-6)).all().item<bool>());
  torch::manual_seed(17);
  auto got = fused_linear(c.x, c.weight, c.bias, o, c.residual, c.keep);
  auto want = reference(c, Activation::kRelu, 1.0, true, true, true, mask);
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5));
  std::vector<torch::Tensor> inputs = {c.x, c.weight, c.bias, c.residual};
  auto g_got = torch::autograd::grad({(got * c.probe).sum()}, inputs);
  auto g_want = torch::autograd::grad({(want * c.probe).sum()}, inputs);
  for (size_t i = 0; i < inputs.size(); ++i) EXPECT_TRUE(torch::allclose(g_got[i], g_want[i], 1e-4, 1e-4)) << i;
  // Not training: no dropout at all.
  o.training = false;
  EXPECT_TRUE(torch::allclose(fused_linear(c.x, c.weight, c.bias, o), reference(c, Activation::kRelu, 1.0, true, false, false),
                              1e-5, 1e-5));
}

TEST(FusedLinearTest, MismatchedShapesAreRejected) {
  Case c = make_case(4, 3);
  EXPECT_THROW(fused_linear(c.x, torch::randn({3, 5}), {}, {}), c10::Error);
  EXPECT_THROW(fused_linear(c.x, c.weight, {}, {}, torch::randn({7, 3})), c10::Error);
}

TEST(SwiGluTest, EqualsSiluTimesUpValuesAndGradients) {
  torch::manual_seed(12);
  auto g = (torch::randn({3, 50, 172}) * 3).requires_grad_(true), u = torch::randn({3, 50, 172}).requires_grad_(true);
  auto probe = torch::randn({3, 50, 172});
  auto got = swiglu(g, u), want = torch::silu(g) * u;
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6));
  auto gg = torch::autograd::grad({(got * probe).sum()}, {g, u});
  auto gw = torch::autograd::grad({(want * probe).sum()}, {g, u});
  EXPECT_TRUE(torch::allclose(gg[0], gw[0], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(gg[1], gw[1], 1e-5, 1e-5));
}

}  // namespace
}  // namespace seqrec::nn

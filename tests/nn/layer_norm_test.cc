// The fused layer_norm equals torch::layer_norm, values and gradients, with and without affine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/nn/layer_norm.h"

namespace seqrec::nn {
namespace {

TEST(LayerNormTest, EqualsTorchWithAndWithoutAffine) {
  torch::manual_seed(6);
  auto x = (torch::randn({3, 300, 50}) * 3 + 1).requires_grad_(true);
  auto w = torch::randn({50}).requires_grad_(true), b = torch::randn({50}).requires_grad_(true);
  auto probe = torch::randn({3, 300, 50});
  for (bool affine : {true, false}) {
    auto got = layer_norm(x, affine ? w : torch::Tensor(), affine ? b : torch::Tensor(), 1e-6);
    auto want = torch::layer_norm(x, {50}, affine ? w : torch::Tensor(), affine ? b : torch::Tensor(), 1e-6);
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << "affine " << affine;
    std::vector<torch::Tensor> inputs = {x};
    if (affine) inputs.insert(inputs.end(), {w, b});
    auto gg = torch::autograd::grad({(got * probe).sum()}, inputs);
    auto gw = torch::autograd::grad({(want * probe).sum()}, inputs);
    for (size_t i = 0; i < inputs.size(); ++i) EXPECT_TRUE(torch::allclose(gg[i], gw[i], 1e-4, 1e-4)) << i;
  }
}

TEST(LayerNormTest, HandComputedRow) {
  // x = (1, 2, 3, 6): mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5.
  auto y = layer_norm(torch::tensor({1.f, 2.f, 3.f, 6.f}).view({1, 4}), {}, {}, 0.0);
  const float r = 1.f / std::sqrt(3.5f);
  EXPECT_NEAR(y[0][0].item<float>(), -2 * r, 1e-6);
  EXPECT_NEAR(y[0][3].item<float>(), 3 * r, 1e-6);
}

TEST(RmsNormTest, EqualsTheDefinitionValuesAndGradients) {
  torch::manual_seed(9);
  auto x = (torch::randn({4, 70, 64}) * 2).requires_grad_(true);
  auto w = torch::randn({64}).requires_grad_(true);
  auto probe = torch::randn({4, 70, 64});
  auto got = rms_norm(x, w, 1e-5);
  auto want = x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5) * w;
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5));
  auto gg = torch::autograd::grad({(got * probe).sum()}, {x, w});
  auto gw = torch::autograd::grad({(want * probe).sum()}, {x, w});
  EXPECT_TRUE(torch::allclose(gg[0], gw[0], 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(gg[1], gw[1], 1e-3, 1e-4));
}

}  // namespace
}  // namespace seqrec::nn

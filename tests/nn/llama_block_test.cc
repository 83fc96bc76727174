// The LLaMA block's pieces against hand-computed values: RMSNorm and rotary embeddings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "seqrec/nn/llama_block.h"

namespace seqrec::nn {
namespace {

TEST(LlamaBlockTest, RmsNormByHand) {
  RmsNorm norm(2, 1e-6);
  torch::NoGradGuard no_grad;
  norm->weight.copy_(torch::tensor({1.f, 2.f}));
  // x = (3, 4): mean(x^2) = 12.5, so y = x / sqrt(12.5) * w.
  auto y = norm(torch::tensor({3.f, 4.f}).view({1, 2}));
  const float r = 1.f / std::sqrt(12.5f + 1e-6f);
  EXPECT_NEAR(y[0][0].item<float>(), 3 * r, 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 8 * r, 1e-6);
}

TEST(LlamaBlockTest, RotaryEmbeddingByHand) {
  // head_dim 4, theta 100: inverse frequencies 100^0 = 1 and 100^(-2/4) = 0.1. HF rotate-half pairs
  // dimension i with i + 2: (x0, x2) rotates by p * 1, (x1, x3) by p * 0.1.
  auto inv = rope_inverse_frequencies(4, 100.0);
  EXPECT_NEAR(inv[0].item<float>(), 1.f, 1e-7);
  EXPECT_NEAR(inv[1].item<float>(), 0.1f, 1e-7);
  auto x = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 1, 4});     // [B, H, T, hd]
  for (int64_t p : {0, 1, 7}) {
    auto rot = rotary_for_positions(torch::tensor({p}, torch::kLong).view({1, 1}), inv);
    auto y = apply_rotary(x, rot).view({4});
    const double a = p * 1.0, b = p * 0.1;
    EXPECT_NEAR(y[0].item<float>(), 1 * std::cos(a) - 3 * std::sin(a), 1e-5) << p;
    EXPECT_NEAR(y[2].item<float>(), 3 * std::cos(a) + 1 * std::sin(a), 1e-5) << p;
    EXPECT_NEAR(y[1].item<float>(), 2 * std::cos(b) - 4 * std::sin(b), 1e-5) << p;
    EXPECT_NEAR(y[3].item<float>(), 4 * std::cos(b) + 2 * std::sin(b), 1e-5) << p;
  }
}

}  // namespace
}  // namespace seqrec::nn
